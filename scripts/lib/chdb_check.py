"""Runs the README's SQL on chDB (a current ClickHouse engine, in process) over the rows an
18.16 test run exported, and compares each analyst query's answer with 18.16's.

Usage: chdb_check.py EXPORT_DIR README.md
EXPORT_DIR holds schema.sql (the migrations for database `ioc`), <table>.jsonl (each table's
rows) and answer_NN.tsv (the analyst queries' answers on 18.16, in file order).
"""

import pathlib
import re
import sys

import chdb
from chdb import session as chdb_session


def statements(text):
    """The non-empty `;`-separated statements of `text`."""
    return [s.strip() for s in text.split(";") if s.strip()]


def name_of(sql):
    """A query's first comment line, or its first line."""
    first = sql.splitlines()[0]
    return first[3:] if first.startswith("-- ") else first


def main(export, readme):
    session = chdb_session.Session()
    engine = "chDB " + chdb.__version__ + ", ClickHouse " + str(
        session.query("SELECT version()", "TSV")
    ).strip()
    print(f"chdb-check: {engine}")
    failures = []
    for ddl in statements((export / "schema.sql").read_text()):
        try:
            session.query(ddl)
        except Exception as e:  # chDB raises its own error type per query
            failures.append(f"[{engine}] migration statement fails: {e}\n  {ddl[:200]}")
    for rows in sorted(export.glob("*.jsonl")):
        data = rows.read_text()
        if not data.strip():
            continue
        try:
            session.query(f"INSERT INTO ioc.{rows.stem} FORMAT JSONEachRow\n{data}")
        except Exception as e:
            failures.append(f"[{engine}] loading ioc.{rows.stem} fails: {e}")
    blocks = re.findall(r"```sql\n(.*?)```", readme.read_text(), re.S)
    if len(blocks) < 2:
        failures.append("README.md has fewer than two ```sql blocks")
    ran = 0
    for block_index, block in enumerate(blocks):
        for query_index, sql in enumerate(statements(block)):
            try:
                answer = str(session.query(sql, "TSV"))
            except Exception as e:
                failures.append(f"[{engine}] README query fails: {name_of(sql)}\n  {e}")
                continue
            ran += 1
            # The second block is store/sql/analyst_queries.sql, which 18.16 answered.
            if block_index == 1:
                expected = (export / f"answer_{query_index:02}.tsv").read_text()
                if answer != expected:
                    failures.append(
                        f"[{engine}] answers otherwise than ClickHouse 18.16: {name_of(sql)}\n"
                        f"  18.16: {expected!r}\n  chDB:  {answer!r}"
                    )
    for f in failures:
        print(f"chdb-check: {f}")
    print(f"chdb-check: {ran} README queries ran, {len(failures)} failures")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])))
