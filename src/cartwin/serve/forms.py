"""The protocol editor, generated from the protocol schema (:mod:`cartwin.protocol.schema`).

:func:`render` walks the pydantic models and writes one form control per field: a number, text or
choice for a scalar (the field's description as its help, its default as the placeholder), a
fieldset for a nested model, a repeatable fieldset with *add* and *remove* for a list of models
(arms, explicit patients, drug administrations) or a table of named models (products, regimens),
a choice of form for a union (a distribution's ``dist``; a dose per kg or flat; a regimen preset or
a list of administrations), a comma-separated list for a list of values and ``name = value`` lines
for a table of numbers. :func:`parse` walks the same schema over the submitted fields and builds
the protocol as a dict, which :func:`to_toml` writes as the protocol file. A new schema field
appears in the editor without a change here.

The form does not validate: its dict is written as TOML and checked by the same loader as
``cartwin validate`` (:mod:`cartwin.serve.design`), so the page shows the command's messages.
Field names are paths: ``arms.0.dose.cells_per_kg``; ``PATH.__variant`` holds a union's chosen
form, ``PATH.__count`` a list's length and ``PATH.N.__key`` the name of a table's entry.
"""

from __future__ import annotations

import types
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from markupsafe import Markup, escape
from pydantic import BaseModel
from pydantic_core import PydanticUndefined

MISSING = object()
VARIANT, COUNT, KEY = "__variant", "__count", "__key"
MAX_ITEMS = 2000  # entries of one list in the form (explicit patients, arms, ...)


# --- types ------------------------------------------------------------------------------------
def _strip(ann):
    """``Annotated[X, ...]`` -> X."""
    while get_origin(ann) is Annotated:
        ann = get_args(ann)[0]
    return ann


def _members(ann) -> tuple[list, bool]:
    """The members of a union (Annotated unwrapped, nested unions flattened) and whether None is one."""
    ann = _strip(ann)
    if get_origin(ann) in (Union, types.UnionType):
        members, optional = [], False
        for a in get_args(ann):
            if a is type(None):
                optional = True
                continue
            inner, opt = _members(a)
            members += inner
            optional = optional or opt
        return members, optional
    return [ann], False


def _is_model(ann) -> bool:
    return isinstance(ann, type) and issubclass(ann, BaseModel)


def _literal_values(ann) -> tuple | None:
    return get_args(ann) if get_origin(ann) is Literal else None


def _variant_key(ann) -> str:
    if _is_model(ann):
        return ann.__name__
    origin = get_origin(ann)
    if origin in (list, tuple):
        return "list"
    return getattr(ann, "__name__", str(ann))


def _variant_label(ann) -> str:
    if _is_model(ann):
        tag = _discriminator(ann)
        if tag:
            return str(tag[1])
        return " / ".join(ann.model_fields) if len(ann.model_fields) <= 2 else ann.__name__
    if ann is str:
        return "a name"
    if get_origin(ann) in (list, tuple):
        inner = _strip(get_args(ann)[0])
        return f"a list of {inner.__name__} entries" if _is_model(inner) else "a list of values"
    return str(ann)


def _discriminator(model) -> tuple[str, Any] | None:
    """The (field, value) of a model's single-valued Literal field (``dist = "normal"``)."""
    for name, f in model.model_fields.items():
        values = _literal_values(_strip(f.annotation))
        if values and len(values) == 1 and f.is_required():
            return name, values[0]
    return None


def _current_variant(members: list, value) -> Any:
    if value is MISSING or value is None:
        return None
    if isinstance(value, dict):
        models = [m for m in members if _is_model(m)]
        for m in models:
            tag = _discriminator(m)
            if tag and value.get(tag[0]) == tag[1]:
                return m
        best = max(models, key=lambda m: len(set(value) & set(m.model_fields)), default=None)
        return best
    if isinstance(value, (list, tuple)):
        return next((m for m in members if get_origin(m) in (list, tuple)), None)
    return next((m for m in members if not _is_model(m) and get_origin(m) not in (list, tuple)), None)


# --- fields -> dict ----------------------------------------------------------------------------
def _join(prefix: str, name: str | int) -> str:
    return f"{prefix}.{name}" if prefix else str(name)


def _number(raw: str, kind: type):
    text = raw.strip()
    try:
        value = float(text)
    except ValueError:
        return text  # kept as written: the loader says what is wrong with it
    if kind is int:
        return int(value) if value.is_integer() else value
    if value.is_integer() and abs(value) < 1e15 and "e" not in text.lower() and "." not in text:
        return int(value)
    return value


def _scalar(raw: str, ann):
    if ann is float or ann is int:
        return _number(raw, ann)
    if ann is bool:
        return {"true": True, "false": False}.get(raw.strip().lower(), raw)
    values = _literal_values(ann)
    if values:
        for v in values:
            if str(v) == raw:
                return v
        return raw
    return raw


def _count(fields: dict, path: str) -> int:
    try:
        return min(MAX_ITEMS, max(0, int(fields.get(_join(path, COUNT), "0"))))
    except ValueError:
        return 0


def parse_model(model, fields: dict[str, str], prefix: str = "") -> dict:
    out = {}
    for name, f in model.model_fields.items():
        value = parse_value(f.annotation, fields, _join(prefix, name), required=f.is_required())
        if value is not MISSING:
            out[name] = value
    return out


def parse(fields: dict[str, str]) -> dict:
    """The protocol dict the submitted fields describe (values as the loader will see them)."""
    from cartwin.protocol.schema import Protocol
    return parse_model(Protocol, fields)


def parse_value(ann, fields: dict[str, str], path: str, required: bool = False):
    members, optional = _members(ann)
    if len(members) > 1 or (optional and _is_model(members[0])):
        chosen = fields.get(_join(path, VARIANT), "")
        member = next((m for m in members if _variant_key(m) == chosen), None)
        if member is None:
            return MISSING
        return parse_value(member, fields, path, required=True)
    ann = members[0]
    values = _literal_values(ann)
    if values and len(values) == 1:
        return values[0]
    if _is_model(ann):
        out = parse_model(ann, fields, path)
        return out if out or required else MISSING
    origin = get_origin(ann)
    if origin in (list, tuple):
        inner = _strip(get_args(ann)[0])
        if _is_model(inner):
            n = _count(fields, path)
            if n == 0 and (optional or not required):  # an empty optional list is the default
                return MISSING
            return [parse_model(inner, fields, _join(path, i)) for i in range(n)]
        raw = fields.get(path, "").strip()
        if not raw:
            return MISSING
        return [_scalar(part.strip(), inner) for part in raw.split(",") if part.strip()]
    if origin is dict:
        key_ann, value_ann = get_args(ann)
        value_ann = _strip(value_ann)
        if value_ann in (float, int, str):
            raw = fields.get(path, "")
            out = {}
            for line in raw.splitlines():
                if not line.strip():
                    continue
                name, sep, value = line.partition("=")
                out[name.strip()] = _scalar(value.strip(), value_ann) if sep else ""
            return out or MISSING
        out = {}
        for i in range(_count(fields, path)):
            key = fields.get(_join(_join(path, i), KEY), "").strip()
            out[key] = parse_value(value_ann, fields, _join(_join(path, i), "value"), required=True)
        return out or MISSING
    raw = fields.get(path)
    if raw is None or raw.strip() == "":
        return MISSING
    return _scalar(raw, ann)


# --- dict -> HTML ------------------------------------------------------------------------------
def render(data: dict) -> Markup:
    """The editor's form for a protocol dict (as read from TOML, valid or not)."""
    from cartwin.protocol.schema import Protocol
    return Markup(_render_model(Protocol, data if isinstance(data, dict) else {}, ""))


def _help(text: str | None) -> str:
    return f'<small class="help">{escape(text)}</small>' if text else ""


def _render_model(model, data: dict, prefix: str) -> str:
    parts = []
    for name, f in model.model_fields.items():
        value = data.get(name, MISSING) if isinstance(data, dict) else MISSING
        default = None if f.default is PydanticUndefined or f.default_factory else f.default
        parts.append(_render_value(f.annotation, value, _join(prefix, name), name, f.description,
                                   f.is_required(), default))
    return "".join(parts)


def _render_value(ann, value, path: str, label: str, help_text: str | None, required: bool, default=None,
                  bare: bool = False) -> str:
    """``bare``: a model's fields without a frame of their own (the chosen form of a union)."""
    members, optional = _members(ann)
    mark = "" if required else ' <span class="optional">optional</span>'
    if len(members) > 1 or (optional and _is_model(members[0])):
        current = _current_variant(members, value)
        if current is None and not optional:
            current = members[0]
        options = ([f'<option value=""{" selected" if current is None else ""}>(not given)</option>']
                   if optional else [])
        for m in members:
            key = _variant_key(m)
            sel = " selected" if current is not None and _variant_key(current) == key else ""
            options.append(f'<option value="{escape(key)}"{sel}>{escape(_variant_label(m))}</option>')
        inner = ""
        if current is not None:
            fits = _current_variant(members, value) is current
            inner = _render_value(current, value if fits else MISSING, path, label, None, True, bare=True)
        return (f'<fieldset class="union" data-path="{escape(path)}"><legend>{escape(label)}{mark}</legend>'
                f'{_help(help_text)}<label class="variant">form <select name="{escape(_join(path, VARIANT))}" '
                f'data-structural="1">{"".join(options)}</select></label>{inner}</fieldset>')
    ann = members[0]
    values = _literal_values(ann)
    if values and len(values) == 1:
        return ""  # fixed by the schema (a distribution's dist, the schema version)
    if _is_model(ann):
        body = _render_model(ann, value if isinstance(value, dict) else {}, path)
        if bare:
            return body
        return (f'<fieldset data-path="{escape(path)}"><legend>{escape(label)}{mark}</legend>'
                f'{_help(help_text)}{body}</fieldset>')
    origin = get_origin(ann)
    if origin in (list, tuple):
        inner = _strip(get_args(ann)[0])
        if _is_model(inner):
            items = value if isinstance(value, list) else []
            rows = []
            for i, item in enumerate(items):
                p = _join(path, i)
                title = f"{label} {i + 1}"
                if isinstance(item, dict) and isinstance(item.get("id"), str):
                    title += f": {item['id']}"
                rows.append(f'<fieldset class="item" data-path="{escape(p)}"><legend>{escape(title)}</legend>'
                            f'<button type="button" class="remove" data-action="remove:{escape(p)}">remove</button>'
                            f'{_render_model(inner, item if isinstance(item, dict) else {}, p)}</fieldset>')
            return (f'<fieldset class="list" data-path="{escape(path)}"><legend>{escape(label)}{mark}</legend>'
                    f'{_help(help_text)}<input type="hidden" name="{escape(_join(path, COUNT))}" value="{len(items)}">'
                    f'{"".join(rows)}<button type="button" class="add" data-action="add:{escape(path)}">'
                    f'add {escape(label)}</button></fieldset>')
        text = ", ".join(_show(v) for v in value) if isinstance(value, (list, tuple)) else _show(value)
        choices = _literal_values(inner)
        hint = f" ({', '.join(map(str, choices))})" if choices else ""
        return _input(path, label, text, (help_text or "") + f"{hint}; comma-separated", mark, "list")
    if origin is dict:
        key_ann, value_ann = get_args(ann)
        value_ann = _strip(value_ann)
        if value_ann in (float, int, str):
            text = "\n".join(f"{k} = {_show(v)}" for k, v in value.items()) if isinstance(value, dict) else ""
            return (f'<label class="field" data-path="{escape(path)}"><span class="name">{escape(label)}{mark}</span>'
                    f'<textarea name="{escape(path)}" rows="3" placeholder="name = value, one a line">{escape(text)}</textarea>'
                    f'{_help(help_text)}</label>')
        entries = list(value.items()) if isinstance(value, dict) else []
        rows = []
        for i, (key, item) in enumerate(entries):
            p = _join(path, i)
            rows.append(f'<fieldset class="item" data-path="{escape(p)}"><legend>{escape(label)}: {escape(key)}</legend>'
                        f'<button type="button" class="remove" data-action="remove:{escape(p)}">remove</button>'
                        f'{_input(_join(p, KEY), "name", key, "the name arms use", "", "str")}'
                        f'{_render_value(value_ann, item, _join(p, "value"), "definition", None, True, bare=True)}</fieldset>')
        return (f'<fieldset class="list" data-path="{escape(path)}"><legend>{escape(label)}{mark}</legend>'
                f'{_help(help_text)}<input type="hidden" name="{escape(_join(path, COUNT))}" value="{len(entries)}">'
                f'{"".join(rows)}<button type="button" class="add" data-action="add:{escape(path)}">'
                f'add to {escape(label)}</button></fieldset>')
    text = "" if value is MISSING or value is None else _show(value)
    if values:
        opts = [f'<option value=""{"" if text else " selected"}>{"(default: " + escape(str(default)) + ")" if default is not None else "(choose)"}</option>']
        opts += [f'<option value="{escape(str(v))}"{" selected" if str(v) == text else ""}>{escape(str(v))}</option>'
                 for v in values]
        return (f'<label class="field" data-path="{escape(path)}"><span class="name">{escape(label)}{mark}</span>'
                f'<select name="{escape(path)}">{"".join(opts)}</select>{_help(help_text)}</label>')
    if ann is bool:
        opts = "".join(f'<option value="{v}"{" selected" if text.lower() == v else ""}>{v or "(choose)"}</option>'
                       for v in ("", "true", "false"))
        return (f'<label class="field" data-path="{escape(path)}"><span class="name">{escape(label)}{mark}</span>'
                f'<select name="{escape(path)}">{opts}</select>{_help(help_text)}</label>')
    kind = "number" if ann in (float, int) else "str"
    placeholder = "" if default in (None, "") else _show(default)
    return _input(path, label, text, help_text, mark, kind, placeholder, _suggestions(path))


def _show(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}" if abs(value) >= 1e5 or (0 < abs(value) < 1e-3) else repr(value).removesuffix(".0")
    return "" if value is MISSING or value is None else str(value)


def _input(path, label, text, help_text, mark, kind, placeholder="", suggestions: list[str] | None = None) -> str:
    mode = ' inputmode="decimal"' if kind == "number" else ""
    datalist, listattr = "", ""
    if suggestions:
        list_id = "dl-" + path.replace(".", "-")
        listattr = f' list="{escape(list_id)}"'
        datalist = f'<datalist id="{escape(list_id)}">' + "".join(
            f'<option value="{escape(s)}">' for s in suggestions) + "</datalist>"
    ph = f' placeholder="{escape(placeholder)}"' if placeholder else ""
    return (f'<label class="field" data-path="{escape(path)}"><span class="name">{escape(label)}{mark}</span>'
            f'<input type="text" name="{escape(path)}" value="{escape(text)}"{mode}{ph}{listattr} autocomplete="off">'
            f'{datalist}{_help(help_text)}</label>')


def _suggestions(path: str) -> list[str] | None:
    """Names the loader knows, offered (not imposed) for the fields that take a name."""
    last = path.rsplit(".", 1)[-1]
    try:
        if last == "product":
            from cartwin.therapy.products import PRODUCTS
            return sorted(PRODUCTS)
        if last == "lymphodepletion":
            from cartwin.therapy.regimens import PRESETS
            return sorted(PRESETS)
        if last == "model" and "." not in path:
            from cartwin.protocol.load import known_models
            return known_models()
        if last == "unit" or last.endswith("_unit"):
            from cartwin.vocabulary import BY_FIELD
            quantity = path.split(".")[-2] if last == "unit" else {"creatinine_unit": "creatinine",
                                                                    "complement_unit": "c3"}[last]
            if quantity in BY_FIELD:
                return sorted(BY_FIELD[quantity].unit_factors)
    except Exception:  # suggestions are a convenience; the loader has the last word
        return None
    return None


# --- actions on the fields ---------------------------------------------------------------------
def apply_action(fields: dict[str, str], action: str) -> dict[str, str]:
    """``add:PATH`` appends an empty entry to the list at PATH; ``remove:PATH.N`` removes entry N
    and renumbers the rest."""
    verb, _, path = action.partition(":")
    fields = dict(fields)
    if verb == "add":
        fields[_join(path, COUNT)] = str(_count(fields, path) + 1)
        return fields
    if verb == "remove":
        parent, _, index = path.rpartition(".")
        try:
            k = int(index)
        except ValueError:
            return fields
        n = _count(fields, parent)
        out = {}
        for name, value in fields.items():
            if name.startswith(parent + "."):
                rest = name[len(parent) + 1:]
                head, _, tail = rest.partition(".")
                if head.isdigit():
                    i = int(head)
                    if i == k:
                        continue
                    if i > k:
                        name = f"{parent}.{i - 1}" + (f".{tail}" if tail else "")
            out[name] = value
        out[_join(parent, COUNT)] = str(max(0, n - 1))
        return out
    return fields


def to_toml(data: dict) -> str:
    import tomli_w
    return tomli_w.dumps(_clean(data))


def _clean(value):
    """TOML has no null; a dict key that is empty is kept so that the loader names it."""
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items() if v is not None and v is not MISSING}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


__all__ = ["render", "parse", "apply_action", "to_toml"]
