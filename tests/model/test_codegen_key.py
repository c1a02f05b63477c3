"""The compiled code of a model is keyed by what it is generated from, not by parameter values."""

import dataclasses

from cartwin.model import DEFAULT_MODEL
from cartwin.model.codegen import code_key, compile_model


def _with_parameter_value(model, name, value):
    parameters = tuple(dataclasses.replace(p, value=value) if p.name == name else p for p in model.parameters)
    return dataclasses.replace(model, parameters=parameters)


def test_a_parameter_value_edit_reuses_the_compiled_code():
    first = DEFAULT_MODEL.parameters[0]
    edited = _with_parameter_value(DEFAULT_MODEL, first.name, first.value * 1.5)
    assert edited.content_hash() != DEFAULT_MODEL.content_hash()  # the declaration did change
    assert code_key(edited) == code_key(DEFAULT_MODEL)
    assert compile_model(edited) is compile_model(DEFAULT_MODEL)


def test_an_equation_edit_gets_new_code():
    state = DEFAULT_MODEL.states[0]
    states = (dataclasses.replace(state, rate=f"({state.rate}) * 0.5"),) + DEFAULT_MODEL.states[1:]
    assert code_key(dataclasses.replace(DEFAULT_MODEL, states=states)) != code_key(DEFAULT_MODEL)
    renamed = dataclasses.replace(DEFAULT_MODEL, observables=DEFAULT_MODEL.observables[::-1])
    assert code_key(renamed) != code_key(DEFAULT_MODEL)
