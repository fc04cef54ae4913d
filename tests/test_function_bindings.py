"""Every function's parameters pass the Python worker's load-time checks (Azure/azure-functions-python-worker,
`azure_functions_worker/functions.py`, `Registry.add_function`): each `func.Out[T]` parameter belongs to an output
binding and T passes that binding's converter `check_output_type_annotation`; each input annotation passes
`check_input_type_annotation`. A function failing them does not load in Azure (devhost does not check this)."""
from __future__ import annotations

import json
import typing

import pytest
from azure.functions import meta
from azure.functions._thirdparty import typing_inspect  # the copy the worker and the library use

import function_app


def functions():
    function_app.app.functions_bindings = {}
    return function_app.app.get_functions()


@pytest.mark.parametrize("fn", functions(), ids=lambda f: f.get_function_name())
def test_annotations_pass_the_workers_binding_checks(fn):
    user = fn.get_user_function()
    hints = typing.get_type_hints(user)
    bindings = {b["name"]: b for b in map(json.loads, fn.get_raw_bindings()) if b["name"] != "$return"}
    for name, binding in bindings.items():
        anno = hints[name]
        converter = meta._ConverterMeta.get(binding["type"])
        is_out = typing_inspect.is_generic_type(anno) and getattr(typing_inspect.get_origin(anno), "__name__",
                                                                    "") == "Out"
        assert is_out == (binding["direction"] == "OUT"), name
        if is_out:
            [inner] = typing_inspect.get_args(anno)
            assert converter.check_output_type_annotation(inner), f"{fn.get_function_name()}.{name}: {inner}"
        else:
            assert converter.check_input_type_annotation(anno), f"{fn.get_function_name()}.{name}: {anno}"


def test_builtin_list_would_not_load():
    from azure.functions.queue import QueueMessageOutConverter

    assert not QueueMessageOutConverter.check_output_type_annotation(list[str])
    assert QueueMessageOutConverter.check_output_type_annotation(typing.List[str])
