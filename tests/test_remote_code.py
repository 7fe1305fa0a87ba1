"""Remote code: the flat source files `save_pretrained` writes, and saved folders loading with
`trust_remote_code=True` where claver_hf cannot be imported (and as before where it can)."""

import importlib
import os
import textwrap

import pytest
from transformers.dynamic_module_utils import get_relative_import_files

from claver_hf.remote_code import RemoteCodeError, write_flat_modules

# ---------------------------------------------------------------- flattening


def write_package(root, files: dict[str, str]):
    for name, source in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(source))
    return root


PACKAGE = {
    "pkg/__init__.py": "",
    "pkg/first/__init__.py": "",
    "pkg/first/main.py": '''
        """Imports at two levels, one of them inside a function."""
        import os

        from ..second.other import OTHER  # a comment after the import
        from .helper import (
            HELPER,
        )


        def lazy():
            from ..second.late import LATE

            return LATE, os.sep
        ''',
    "pkg/first/helper.py": "HELPER = 1\n",
    "pkg/second/__init__.py": "",
    "pkg/second/other.py": "from ..first.helper import HELPER\n\nOTHER = HELPER + 1\n",
    "pkg/second/late.py": "LATE = 3\n",
}


def test_flattening_follows_every_relative_import(tmp_path, monkeypatch):
    package = write_package(tmp_path / "src", PACKAGE)
    flat = tmp_path / "flat_modules"
    written = write_flat_modules([package / "pkg/first/main.py"], flat)
    assert [path.name for path in written] == ["helper.py", "late.py", "main.py", "other.py"]
    expected_main = (
        textwrap.dedent(PACKAGE["pkg/first/main.py"])
        .replace("from ..second.other import", "from .other import")
        .replace("from ..second.late import", "from .late import")
    )
    assert (flat / "main.py").read_text() == expected_main
    assert (flat / "other.py").read_text() == "from .helper import HELPER\n\nOTHER = HELPER + 1\n"
    assert (flat / "helper.py").read_text() == PACKAGE["pkg/first/helper.py"]
    # transformers finds every file from the first, and the flat files import each other.
    assert sorted(os.path.basename(f) for f in get_relative_import_files(flat / "main.py")) == [
        "helper.py",
        "late.py",
        "other.py",
    ]
    (flat / "__init__.py").touch()
    monkeypatch.syspath_prepend(tmp_path)
    main = importlib.import_module("flat_modules.main")
    assert (main.OTHER, main.lazy()[0]) == (2, 3)


@pytest.mark.parametrize(
    "files, error",
    [
        (
            {"pkg/second/helper.py": "", "pkg/second/other.py": "from .helper import *\nOTHER = 2\n"},
            "share the file name 'helper.py'",
        ),
        ({"pkg/second/other.py": "from ..first import helper\nOTHER = 2\n"}, "imports the package .*first"),
        ({"pkg/second/other.py": "from . import late\nOTHER = 2\n"}, "imports the package .*second"),
        (
            {"pkg/second/late.py": "def f():\n    import claver_hf\n"},
            "late.py:2 imports claver_hf by its absolute",
        ),
        ({"pkg/second/other.py": "from claver_hf.prompts import bank\n"}, "other.py:1 imports claver_hf"),
        ({"pkg/second/other.py": "from .missing import x\n"}, "names no module file .*missing.py is missing"),
        ({"pkg/second/late.py": "from \\\n    .other import OTHER\n"}, "late.py:1: cannot rewrite"),
    ],
)
def test_flattening_errors(files, error, tmp_path):
    package = write_package(tmp_path / "src", {**PACKAGE, **files})
    with pytest.raises(RemoteCodeError, match=error):
        write_flat_modules([package / "pkg/first/main.py"], tmp_path / "out")
