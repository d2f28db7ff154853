"""Runs the SQL of docs/data-model.md on chDB (a current ClickHouse engine, in process) over the rows an
18.16 test run exported, and compares each analyst query's answer with 18.16's; then runs
every kind of SELECT the test suite sent to the 18.16 server (its query log), so a query the
store issues that a current engine refuses is found.

Usage: chdb_check.py EXPORT_DIR DOC.md [CLICKHOUSE_HTTP_URL [SINCE_EPOCH_S]]
EXPORT_DIR holds schema.sql (the migrations for database `ioc`), <table>.jsonl (each table's
rows), raw_answer_NN.tsv (the answers of the document's first sql block on 18.16) and
answer_NN.tsv (the analyst queries' answers on 18.16, in file order).
"""

import json
import pathlib
import re
import sys
import urllib.parse
import urllib.request

import chdb
from chdb import session as chdb_session


def statements(text):
    """The non-empty `;`-separated statements of `text`."""
    return [s.strip() for s in text.split(";") if s.strip()]


def name_of(sql):
    """A query's first comment line, or its first line."""
    first = sql.splitlines()[0]
    return first[3:] if first.startswith("-- ") else first


# Any database named ioc_<something> (a test's, the API fuzzer's), before a `.` or quoted.
TEST_DATABASE = re.compile(r"\bioc_[A-Za-z0-9_]+(?=\.)|(?<=')ioc_[A-Za-z0-9_]+(?=')")
LITERAL = re.compile(r"'(?:[^'\\]|\\.)*'|\b\d+(?:\.\d+)?\b")


def logged_selects(url, since):
    """One example of each shape of SELECT the 18.16 server finished since `since` (epoch s),
    with test databases renamed `ioc` (shape: the text with its literals blanked)."""
    sql = (
        f"SELECT query FROM system.query_log WHERE type = 2 AND event_time >= toDateTime({since}) "
        "AND (query LIKE 'SELECT%' OR query LIKE 'WITH%') "
        "AND position(query, 'system.query_log') = 0 FORMAT JSONEachRow"
    )
    with urllib.request.urlopen(url + "/?" + urllib.parse.urlencode({"query": "SYSTEM FLUSH LOGS"}), data=b"") as r:
        r.read()
    with urllib.request.urlopen(url + "/?" + urllib.parse.urlencode({"query": sql})) as r:
        rows = [json.loads(line)["query"] for line in r.read().decode().splitlines() if line]
    shapes = {}
    for query in rows:
        query = TEST_DATABASE.sub("ioc", query)
        shapes.setdefault(LITERAL.sub("?", " ".join(query.split())), query)
    return sorted(shapes.values())


def main(export, readme, url, since):
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
        failures.append(f"{readme} has fewer than two ```sql blocks")
    ran = 0
    for block_index, block in enumerate(blocks):
        for query_index, sql in enumerate(statements(block)):
            try:
                answer = str(session.query(sql, "TSV"))
            except Exception as e:
                failures.append(f"[{engine}] documented query fails: {name_of(sql)}\n  {e}")
                continue
            ran += 1
            # 18.16 answered the first block over the test's raw rows (raw_answer_NN.tsv) and
            # the second, store/sql/analyst_queries.sql, over its KPI rows (answer_NN.tsv).
            prefix = ["raw_answer", "answer"][block_index] if block_index < 2 else None
            if prefix:
                expected = (export / f"{prefix}_{query_index:02}.tsv").read_text()
                if answer != expected:
                    failures.append(
                        f"[{engine}] answers otherwise than ClickHouse 18.16: {name_of(sql)}\n"
                        f"  18.16: {expected!r}\n  chDB:  {answer!r}"
                    )
    logged = 0
    if url:
        session.query("USE ioc")
        for sql in logged_selects(url, since):
            try:
                session.query(sql, "TSV")
                logged += 1
            except Exception as e:
                failures.append(f"[{engine}] a query the tests sent to 18.16 fails: {e}\n  {sql[:300]}")
    for f in failures:
        print(f"chdb-check: {f}")
    print(
        f"chdb-check: {ran} documented queries and {logged} kinds of logged queries ran, "
        f"{len(failures)} failures"
    )
    return 1 if failures else 0


if __name__ == "__main__":
    url = sys.argv[3] if len(sys.argv) > 3 else None
    since = int(sys.argv[4]) if len(sys.argv) > 4 else 0
    sys.exit(main(pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2]), url, since))
