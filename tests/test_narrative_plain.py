"""The fast check for plain generated narrative (adapter.fhirpath.xhtml._plain_and_safe) says
exactly what the token-by-token reading it replaced said: the body is allowed elements without
attributes, text and predefined or numeric entities, properly nested. The reading below is that
specification, token by token."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from adapter.fhirpath import xhtml

_TOKEN = re.compile(
    r"<(/?)([a-z][a-z0-9]*)\s*(/?)>|[^<&]+|&(?:amp|lt|gt|quot|apos|#[0-9]{1,7}|#x[0-9a-fA-F]{1,6});"
)


def plain_spec(div: str) -> bool:
    if not div.startswith(xhtml._ROOT_OPEN) or not div.endswith("</div>"):
        return False
    body = div[len(xhtml._ROOT_OPEN) : -len("</div>")]
    if "]]>" in body or xhtml._NOT_XML_CHAR.search(body):
        return False
    stack: list[str] = []
    pos = 0
    for m in _TOKEN.finditer(body):
        if m.start() != pos:
            return False
        pos = m.end()
        name = m.group(2)
        if name is None:
            continue
        if name not in xhtml.ALLOWED_ELEMENTS:
            return False
        if m.group(1):
            if m.group(3) or not stack or stack.pop() != name:
                return False
        elif not m.group(3):
            stack.append(name)
    return pos == len(body) and not stack


PIECES = st.sampled_from(
    [
        "<p>",
        "</p>",
        "<b>",
        "</b>",
        "<br/>",
        "<br />",
        "<x>",
        "</x>",
        "&amp;",
        "&",
        "&#12;",
        "&#x1F;",
        "&foo;",
        "a",
        " ",
        "\n",
        "<",
        ">",
        "<p >",
        "</ p>",
        "<!-- c -->",
        "]]>",
        "<p/>",
        "</p/>",
        "\x01",
        "é",
    ]
)


@settings(max_examples=3000, deadline=None)
@given(st.lists(PIECES, max_size=14))
def test_plain_check_agrees_with_the_token_reading(pieces: list[str]) -> None:
    div = xhtml._ROOT_OPEN + "".join(pieces) + "</div>"
    assert xhtml._plain_and_safe(div) == plain_spec(div)


def test_a_long_text_that_is_not_plain_is_refused_at_once() -> None:
    div = xhtml._ROOT_OPEN + "<p>" + "a" * 200_000 + "<</p></div>"
    assert xhtml._plain_and_safe(div) is False and plain_spec(div) is False
    assert xhtml._plain_and_safe(xhtml._ROOT_OPEN + "<p>" + "a" * 200_000 + "</p></div>") is True
