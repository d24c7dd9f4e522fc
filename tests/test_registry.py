"""The generic registry: lazy targets, decorators, did-you-mean errors, no import before use."""

import sys

import pytest

from densecaption.errors import UserError
from densecaption.registry import Registry, import_target


def test_lazy_target_is_imported_on_first_get_only(monkeypatch):
    monkeypatch.delitem(sys.modules, "json.tool", raising=False)
    reg: Registry = Registry("thing")
    reg.register("tool", "json.tool:main", summary="json's command line")
    assert "json.tool" not in sys.modules  # registering imports nothing
    assert reg.entry("tool").summary == "json's command line"
    fn = reg.get("tool")
    assert "json.tool" in sys.modules and fn is sys.modules["json.tool"].main
    assert reg.get("tool") is fn


def test_decorator_registers_and_returns_object_with_docstring_summary():
    reg: Registry = Registry("thing")

    @reg.register("double", kind="math")
    def double(x):
        """Twice x.

        More text that is not the summary."""
        return 2 * x

    assert double(2) == 4 and reg.get("double") is double
    assert reg.entry("double").summary == "Twice x."
    assert reg.entry("double").meta["kind"] == "math"
    assert reg.names() == ("double",) and "double" in reg and len(reg) == 1


def test_unknown_name_suggests_the_closest():
    reg: Registry = Registry("model backend")
    for name in ("open_clip", "hf", "lm"):
        reg.register(name, object())
    with pytest.raises(UserError, match=r"unknown model backend 'open-clip'; did you mean 'open_clip'\? "
                                        r"\(known: open_clip, hf, lm\)"):
        reg.get("open-clip")
    with pytest.raises(UserError) as info:
        reg.entry("zzz")
    assert "did you mean" not in str(info.value) and "known: open_clip, hf, lm" in str(info.value)


def test_duplicate_names_are_refused():
    reg: Registry = Registry("thing")
    reg.register("a", object())
    with pytest.raises(ValueError, match="already registered"):
        reg.register("a", object())


def test_import_target_rejects_malformed_and_follows_dotted_attrs():
    assert import_target("os:path.join") is __import__("os").path.join
    with pytest.raises(ValueError):
        import_target("os.path.join")
