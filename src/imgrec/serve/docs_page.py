"""GET /docs: the API reference as one plain HTML page, written from the OpenAPI schema.

FastAPI's /docs loads Swagger UI's scripts and styles from a CDN, which an offline machine
cannot reach and which would let a third party run script next to the API key. This page has
no script and fetches nothing: each endpoint with its parameters, body and answers; try the
API with curl (docs/deploy.md) or the page at /.
"""

from __future__ import annotations

from html import escape

# The page may load nothing at all; its only style is inline.
DOCS_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'",
    "X-Content-Type-Options": "nosniff",
}
STYLE = (
    "body{font:15px/1.5 system-ui,sans-serif;max-width:60em;margin:2em auto;padding:0 1em}"
    "code{background:#f3f3f3;padding:0 .2em}h2{margin-top:2em;border-top:1px solid #ccc}"
    "td,th{text-align:left;padding:.2em .8em .2em 0;vertical-align:top}"
)


def render_docs(schema: dict) -> str:
    """The whole page for `schema` (the app's OpenAPI document)."""
    info = schema.get("info", {})
    title = escape(f"{info.get('title', 'API')} {info.get('version', '')}".strip())
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>{title}</title>",
        f"<style>{STYLE}</style></head><body><h1>{title}</h1>",
        "<p>The OpenAPI schema is at <code>/openapi.json</code>. Errors are JSON "
        "<code>{&quot;error&quot;: sentence, &quot;filename&quot;: name or null}</code>.</p>",
    ]
    for path, operations in schema.get("paths", {}).items():
        for method, operation in operations.items():
            parts.append(_operation(method, path, operation))
    parts.append("</body></html>")
    return "".join(parts)


def _operation(method: str, path: str, operation: dict) -> str:
    head = f"<h2><code>{escape(method.upper())} {escape(path)}</code></h2>"
    text = operation.get("description") or operation.get("summary") or ""
    body = f"<p>{escape(text)}</p>" if text else ""
    return head + body + _parameters(operation) + _request_body(operation) + _responses(operation)


def _parameters(operation: dict) -> str:
    rows = [
        f"<tr><td><code>{escape(p['name'])}</code></td><td>{escape(p.get('in', ''))}</td>"
        f"<td>{escape(_type(p.get('schema', {})))}</td>"
        f"<td>{escape(p.get('description', ''))}</td></tr>"
        for p in operation.get("parameters", [])
    ]
    if not rows:
        return ""
    header = "<tr><th>parameter</th><th>in</th><th>type</th><th>what</th></tr>"
    return f"<table>{header}{''.join(rows)}</table>"


def _request_body(operation: dict) -> str:
    content = operation.get("requestBody", {}).get("content", {})
    if not content:
        return ""
    kinds = ", ".join(f"<code>{escape(kind)}</code>" for kind in content)
    return f"<p>Body: {kinds}</p>"


def _responses(operation: dict) -> str:
    items = [
        f"<li><code>{escape(str(status))}</code> {escape(answer.get('description', ''))}</li>"
        for status, answer in operation.get("responses", {}).items()
    ]
    return f"<ul>{''.join(items)}</ul>" if items else ""


def _type(schema: dict) -> str:
    """A parameter's type in words: 'integer', 'number or null', ..."""
    if "anyOf" in schema:
        return " or ".join(_type(s) for s in schema["anyOf"])
    bounds = [
        f"{word} {schema[key]}"
        for key, word in (("minimum", ">="), ("exclusiveMinimum", ">"), ("maximum", "<="))
        if key in schema
    ]
    bounds += [f"< {schema['exclusiveMaximum']}"] if "exclusiveMaximum" in schema else []
    kind = schema.get("type", "any")
    return f"{kind} ({', '.join(bounds)})" if bounds else kind
