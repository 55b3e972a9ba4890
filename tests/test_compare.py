"""The one pytree comparison: structure first, then values, failures naming the tensor path."""

import numpy as np
import pytest

from project.compare import POLICY, Tolerance, assert_trees_close, compare_trees, tolerance

TOL = Tolerance(1e-5, 1e-6)


def tree(**overrides):
    base = {"enc": {"w": np.ones((2, 3), np.float32), "b": np.zeros(3, np.float32)}, "out": [np.arange(4.0)]}
    base.update(overrides)
    return base


def test_equal_trees_pass():
    assert compare_trees(tree(), tree(), TOL).passed


def test_value_error_names_the_path_and_error():
    other = tree()
    other["enc"] = {"w": np.ones((2, 3), np.float32), "b": np.array([0, 0, 1e-3], np.float32)}
    result = compare_trees(other, tree(), TOL)
    assert not result.passed
    assert "enc/b" in result.message() and "1.000e-03" in result.message()


def test_a_complex_leaf_is_compared_in_its_imaginary_part_too():
    """An S4D state is complex: equal real parts with imaginary parts 1e-3 apart fail (the control: equal ones pass)."""
    a = np.array([1 + 2j, 3 - 1j], np.complex64)
    assert compare_trees({"x": a}, {"x": a.copy()}, TOL).passed
    result = compare_trees({"x": a + 1e-3j}, {"x": a}, TOL)
    assert not result.passed and "x: max |a-b| = 1.000e-03" in result.message()


def test_missing_and_extra_keys_are_structure_errors():
    other = tree()
    del other["enc"]["b"]
    other["extra"] = np.zeros(1)
    message = compare_trees(other, tree(), TOL).message()
    assert "enc/b: missing" in message and "extra: unexpected" in message


def test_shape_and_dtype_mismatches_are_reported_before_values():
    assert "shape (3, 2) != (2, 3)" in compare_trees(tree(enc={"w": np.ones((3, 2), np.float32),
                                                                 "b": np.zeros(3, np.float32)}), tree(), TOL).message()
    assert "dtype float64 != float32" in compare_trees(tree(enc={"w": np.ones((2, 3)), "b": np.zeros(3, np.float32)}),
                                                       tree(), TOL).message()


def test_nan_where_the_reference_is_finite_fails():
    assert not compare_trees({"a": np.array([np.nan])}, {"a": np.array([1.0])}, TOL).passed
    assert compare_trees({"a": np.array([np.inf, 1.0])}, {"a": np.array([np.inf, 1.0])}, TOL).passed


def test_tolerance_rule_is_relative_plus_absolute():
    assert compare_trees({"a": np.array([100.0 + 9e-4])}, {"a": np.array([100.0])}, TOL).passed
    assert not compare_trees({"a": np.array([100.0 + 2e-3])}, {"a": np.array([100.0])}, TOL).passed


def test_assert_raises_with_message():
    with pytest.raises(AssertionError, match="out/0"):
        assert_trees_close({"out": [np.arange(4.0) + 1]}, tree(), TOL, check_dtype=False)


def test_policy_matches_architecture_table():
    assert tolerance("function", "float64") == Tolerance(1e-10, 1e-12)
    assert tolerance("function", "float32") == Tolerance(1e-5, 1e-6)
    assert tolerance("gradient", "float32").rtol == 1e-4 and tolerance("step", "float64").rtol == 1e-8
    assert set(POLICY) == {"function", "network", "loglik", "gradient", "step"}
    with pytest.raises(KeyError, match="levels"):
        tolerance("nope", "float32")
