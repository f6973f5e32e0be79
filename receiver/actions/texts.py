"""Default titles and messages of notifications, annotations and silences: Jinja2 templates over
the same context as a playbook's templates (alert, params, rule, playbook, execution, steps)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from receiver.templates import compile_template

TITLE = compile_template(
    "[{{ (execution.status | default('running')) | upper }}] {{ alert.labels.alertname }}"
    " · {{ playbook.name }}",
    "default notification title",
)

BODY = compile_template(
    """\
Alert {{ alert.labels.alertname }} ({{ alert.status }}){% if alert.annotations.get('summary') %}: \
{{ alert.annotations.summary }}{% endif %}
Labels: {% for k, v in alert.labels | dictsort %}{{ k }}={{ v }}{% if not loop.last %}, {% endif %}\
{% endfor %}
Playbook {{ playbook.name }} (rule {{ rule.name }}): {{ execution.status | default('running') }}\
{% if execution.get('error') %} ({{ execution.error }}){% endif %}
{% for id, s in steps | dictsort %}- {{ id }}: {{ s.status }}{% if s.error %} ({{ s.error }}){% endif %}
{% endfor %}\
{% if execution.recovered is defined %}Recovered: {{ 'yes' if execution.recovered else 'not yet' }}
{% endif %}\
{{ execution.url }}""",
    "default notification body",
)

ANNOTATION = compile_template(
    "{{ playbook.name }} for {{ alert.labels.alertname }}: {{ execution.status | default('running') }}"
    "{% if execution.get('error') %} ({{ execution.error }}){% endif %}\n{{ execution.url }}",
    "default annotation text",
)

SILENCE_COMMENT = compile_template(
    "receiver is remediating this alert with playbook {{ playbook.name }}: {{ execution.url }}",
    "default silence comment",
)


def render(template: Any, context: Mapping[str, Any]) -> str:
    """Render one of the templates above; TemplateError names it."""
    return str(template.render(context))
