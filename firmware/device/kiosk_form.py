"""The kiosk's report form: a citizen at a fixed terminal picks a class on the screen,
may add a few words and have the terminal's camera take a photo, and files a report
(source ``citizen``) that leaves through the device's outbox like any other.

No I/O here: ``render_form`` is the page, ``parse_form`` the submitted form checked
(``FormError`` says what is wrong; nothing is filed), ``Pacer`` the pause between two
filings that keeps a held-down finger from filing a hundred.
"""

import html
import time
from urllib.parse import parse_qs

from ..core.report import TEXT_MAX

FORM_MAX_BYTES = 4096


class FormError(ValueError):
    """A submitted form that files nothing; ``str()`` is shown to the citizen."""


def choices(classes, names=None):
    """The classes the screen offers: [{"kind", "code", "label"}], labelled by their
    profile text, else the code book's name (``names(kind, code)``), else the code."""
    out = []
    for c in classes:
        label = c.get("text") or (names(c["kind"], c["code"]) if names else None) or c["code"]
        out.append({"kind": c["kind"], "code": c["code"], "label": label})
    return out


PAGE = """<!doctype html><html lang="zh"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>gridlink {device} 我要反映</title>
<style>body{{font-family:sans-serif;margin:2em;font-size:1.3em}}
label.c{{display:block;border:1px solid #888;padding:.6em;margin:.4em 0}}
textarea{{width:100%;font-size:1em}}button{{font-size:1.4em;margin-top:1em}}
.msg{{padding:.6em;border:2px solid #2b8a3e}}.msg.error{{border-color:#c92a2a}}</style></head>
<body><h1>我要反映 Report a problem</h1>{message}
<form method="post" action="/report">{classes}
<p><label>说明 (可不填) what you see<br><textarea name="text" maxlength="{text_max}"
rows="3"></textarea></label></p>{photo}
<button type="submit">提交 Submit</button></form><p><a href="/">返回 back</a></p></body></html>"""


def render_form(device, offered, *, camera=True, message=None, error=False):
    """The form page: one choice per offered class, the words, the photo box."""
    radios = "".join(
        f'<label class="c"><input type="radio" name="code" value="{html.escape(c["code"])}"'
        f' required> {html.escape(c["label"])} <small>{html.escape(c["code"])}</small></label>'
        for c in offered)
    photo = ('<p><label><input type="checkbox" name="photo" value="1" checked> 拍照 '
             'take a photo with this terminal\'s camera</label></p>') if camera else ""
    shown = (f'<p class="msg{" error" if error else ""}" role="status">'
             f'{html.escape(message)}</p>') if message else ""
    return PAGE.format(device=html.escape(device), message=shown, classes=radios,
                       text_max=TEXT_MAX, photo=photo)


def parse_form(body, offered):
    """(class, text, photo) from a submitted form body (bytes); FormError when the class
    is not one offered, the words are too long, or the body is not a form."""
    if len(body) > FORM_MAX_BYTES:
        raise FormError(f"表单过大 the form is larger than {FORM_MAX_BYTES} bytes")
    try:
        form = parse_qs(body.decode("utf-8"), strict_parsing=False)
    except UnicodeDecodeError:
        raise FormError("表单无法读取 the form is not UTF-8 text") from None
    codes = form.get("code", [])
    if len(codes) != 1:
        raise FormError("请选择一类问题 pick one kind of problem")
    chosen = next((c for c in offered if c["code"] == codes[0]), None)
    if chosen is None:
        raise FormError(f"此终端不受理 {codes[0][:20]!r}: pick one of the kinds shown")
    texts = form.get("text", [""])
    text = " ".join(texts[0].split()) if len(texts) == 1 else None
    if text is None:
        raise FormError("说明只能有一段 one description at most")
    if len(text) > TEXT_MAX:
        raise FormError(f"说明太长 the description is {len(text)} characters, at most {TEXT_MAX}")
    return chosen, text, form.get("photo", [""])[0] == "1"


class Pacer:
    """At most one filing every ``gap_s`` seconds (monotonic time)."""

    def __init__(self, gap_s, clock=time.monotonic):
        self.gap_s = gap_s
        self.clock = clock
        self.last = None

    def wait_s(self):
        """Seconds until the next filing may be made (0: now)."""
        if self.last is None:
            return 0.0
        return max(0.0, self.last + self.gap_s - self.clock())

    def filed(self):
        self.last = self.clock()
