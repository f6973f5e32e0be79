"""The storm benchmark: the receiver measured against a floor, in one run. `python -m bench`."""
