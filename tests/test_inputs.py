from __future__ import annotations

import pandas as pd
import polars as pl
import pyarrow as pa
import pytest

from enrich.errors import InputError
from enrich.inputs import prepare, row_hash


def frame() -> pl.DataFrame:
    return pl.DataFrame({"item_id": [3, 1], "title": ["Heat", "Toy Story"], "year": [1995, 1995]})


def test_default_text_columns_are_the_string_columns() -> None:
    rows = prepare(frame(), "item_id")
    assert rows.text_cols == ["title"]
    assert rows.frame["_key"].to_list() == ["3", "1"]
    assert rows.frame["item_id"].dtype == pl.Int64


@pytest.mark.parametrize("convert", [lambda f: f.to_pandas(), lambda f: f.to_arrow()])
def test_pandas_and_arrow_give_the_same_rows(convert) -> None:
    ours = prepare(frame(), "item_id")
    theirs = prepare(convert(frame()), "item_id")
    assert theirs.frame.equals(ours.frame)


def test_hash_ignores_column_order_and_sees_any_change() -> None:
    a = prepare(frame(), "item_id", ["title", "year"]).frame["input_hash"]
    b = prepare(frame().select("year", "title", "item_id"), "item_id", ["year", "title"])
    assert a.to_list() == b.frame["input_hash"].to_list()
    changed = frame().with_columns(pl.col("title").str.replace("Heat", "Heat!"))
    c = prepare(changed, "item_id", ["title", "year"]).frame["input_hash"]
    assert c[0] != a[0] and c[1] == a[1]
    assert row_hash({"a": "x"}) == row_hash({"a": "x", "b": None})


def test_non_text_columns_are_rendered() -> None:
    df = pl.DataFrame(
        {
            "item_id": ["a"],
            "tags": [["x", "y"]],
            "meta": [{"k": 1}],
            "raw": [b"caf\xe9"],
        }
    )
    rows = prepare(df, "item_id", ["tags", "meta", "raw"]).frame.row(0, named=True)
    assert rows["tags"] == "x, y" and rows["meta"] == '{"k":1}' and rows["raw"] == "caf\ufffd"


def test_missing_id_column_names_it() -> None:
    with pytest.raises(InputError, match=r"id column 'movie_id' not found.*item_id"):
        prepare(frame(), "movie_id")


def test_duplicate_ids_are_named() -> None:
    df = pl.DataFrame({"item_id": [1, 2, 1], "title": ["a", "b", "c"]})
    with pytest.raises(InputError, match=r"duplicated id.*\[1\].*unique"):
        prepare(df, "item_id")


def test_null_ids_name_the_rows() -> None:
    df = pl.DataFrame({"item_id": [1, None, 3], "title": ["a", "b", "c"]})
    with pytest.raises(InputError, match=r"null value.*row\(s\) \[1\]"):
        prepare(df, "item_id")


def test_mixed_type_ids_from_pandas_are_refused_clearly() -> None:
    df = pd.DataFrame({"item_id": [1, "two"], "title": ["a", "b"]})
    with pytest.raises(InputError, match="mixed types"):
        prepare(df, "item_id")


def test_float_ids_and_unknown_text_columns() -> None:
    with pytest.raises(InputError, match="must be integers or strings"):
        prepare(pl.DataFrame({"item_id": [1.0], "t": ["a"]}), "item_id")
    with pytest.raises(InputError, match=r"text column\(s\) \['plot'\] not found"):
        prepare(frame(), "item_id", ["plot"])
    with pytest.raises(InputError, match="no text columns"):
        prepare(pl.DataFrame({"item_id": [1], "n": [2]}), "item_id")


def test_other_inputs_are_refused() -> None:
    with pytest.raises(InputError, match="polars, pandas or pyarrow"):
        prepare([{"item_id": 1}], "item_id")
    assert prepare(pa.table({"item_id": [1], "t": ["x"]}), "item_id").text_cols == ["t"]
