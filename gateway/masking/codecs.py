"""Body codecs: incremental, bounded-memory masking transforms for JSON, NDJSON, CSV and TSV."""

from __future__ import annotations

import codecs
import csv
import dataclasses
import io
import operator
import re
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import orjson

from gateway.masking import scanner
from gateway.masking.config import MaskingConfig
from gateway.masking.decoders import Chain
from gateway.masking.errors import MaskingError
from gateway.masking.plan import MaskPlan, Walker, norm_name

JSON_TYPES = frozenset({"application/json", "text/json"})
NDJSON_TYPES = frozenset(
    {
        "application/x-ndjson",
        "application/ndjson",
        "application/jsonl",
        "application/x-jsonlines",
        "application/jsonlines",
    }
)
CSV_TYPES = {"text/csv": ",", "application/csv": ",", "text/tab-separated-values": "\t"}
_WS = b" \t\r\n"
_BOM = b"\xef\xbb\xbf"
_SENTINEL = "\x00datagate:records\x00"
_SENTINEL_JSON = orjson.dumps(_SENTINEL)
# One JSON token: a string, a structural character, or a run of anything else.
# Possessive repeats: a long string costs the regex engine no backtracking state.
_TOKEN_RE = re.compile(
    rb'[ \t\r\n]*+(?:("[^"\\]*+(?:\\.[^"\\]*+)*+")|([][{}:,])|([^][{}:," \t\r\n]++))'
)
_FIRST_KEY_RE = re.compile(rb'[ \t\r\n]*+(\{[ \t\r\n]*+"[^"\\]*+(?:\\.[^"\\]*+)*+"[ \t\r\n]*+:)')


@dataclasses.dataclass(slots=True)
class MaskReport:
    """What one response's masking did: field labels -> occurrences masked or removed,
    identifier kind -> scanner findings, and the number of records sent."""

    masked_fields: dict[str, int] = dataclasses.field(default_factory=dict)
    findings: dict[str, int] = dataclasses.field(default_factory=dict)
    records_out: int = 0


class BodyTransform(Protocol):
    """Masks a response body chunk by chunk; the output is identity-encoded."""

    content_type: str
    report: MaskReport

    def feed(self, chunk: bytes) -> bytes: ...

    def finish(self) -> bytes: ...

    def whole(self, body: bytes) -> bytes: ...


class _Codec(Protocol):
    def feed(self, data: bytes) -> bytes: ...

    def finish(self) -> bytes: ...


def media_type(header: str | None) -> tuple[str, dict[str, str]]:
    """`application/json; charset=UTF-8` -> ("application/json", {"charset": "utf-8"})."""
    if not header:
        return "", {}
    kind, *rest = header.split(";")
    params: dict[str, str] = {}
    for item in rest:
        name, _, value = item.partition("=")
        params[name.strip().lower()] = value.strip().strip('"').lower()
    return kind.strip().lower(), params


_MEDIA_TYPES: dict[str, tuple[str, dict[str, str]]] = {}


def _media_type(header: str | None) -> tuple[str, dict[str, str]]:
    """`media_type`, remembered: upstreams send the same few Content-Type values."""
    if header is None:
        return "", {}
    found = _MEDIA_TYPES.get(header)
    if found is None:
        found = media_type(header)
        if len(_MEDIA_TYPES) < 256:
            _MEDIA_TYPES[header] = found
    return found[0], dict(found[1])


class _Output:
    """Shared by a codec's steps: the walker's counts, the scanner pass and its action."""

    def __init__(self, plan: MaskPlan, walker: Walker, report: MaskReport) -> None:
        self.plan = plan
        self.walker = walker
        self.report = report

    def scan(self, data: bytes) -> bytes:
        if not self.plan.scan or not data:
            return data
        action = self.plan.scanner_action
        found = self.report.findings
        before = sum(found.values())
        out = scanner.scan_bytes(data, found, mask=action == "mask")
        if action == "block" and sum(found.values()) > before:
            raise MaskingError(
                "unlabelled_identifier",
                f"the response holds identifiers ({', '.join(sorted(found))}) outside "
                "classified fields and this dataset blocks them",
            )
        return out


def _malformed(what: str, exc: Exception) -> MaskingError:
    return MaskingError("malformed_body", f"the upstream sent malformed {what}: {exc}")


class JsonCodec:
    """A JSON document. A top-level array, or the array under the dataset's `records_key`,
    streams batch by batch; any other document is buffered up to a limit, then masked."""

    def __init__(self, out: _Output, config: MaskingConfig) -> None:
        self._out = out
        self._walker = out.walker
        self._batch = config.batch_bytes
        self._max_doc = config.max_json_document_bytes
        self._max_record = config.max_record_bytes
        self._too_large = "payload_too_large" if config.oversize_status == 413 else "upstream_error"
        key = out.plan.records_key
        keyed = key is not None and out.plan.rule_for(key) is None
        if keyed and out.plan.paths is not None:
            node = out.plan.paths.children.get(key or "")
            keyed = node is None or node.rule is None
        self._records_key = key if keyed else None
        self._state = "start"
        self._buf = bytearray()
        self._emitted = False  # an element has been written
        self._keyed = False  # the array being streamed sits under records_key
        self._lead: bytes | None = None  # the first record's `{"key":`, to guess record ends
        self._lex = (0, 0, -1)  # exact scan state: position, depth, last element comma
        self._batch_values: list[Any] = []  # the elements a proved cut parsed
        self._prefix_lex = (0, 0, None, False)  # position, depth, pending key, expect value
        # After a lex that stopped inside an unfinished token (a long string, a large
        # record), lex again only once the buffer reaches this size: a long token is then
        # rescanned a logarithmic number of times, not once per chunk.
        self._rescan_at = 0

    def feed(self, data: bytes) -> bytes:
        self._buf += data
        out = b""
        if self._state == "start":
            out = self._start()
        if self._state == "prefix" and len(self._buf) >= self._rescan_at:
            out += self._prefix()
        if self._state == "array":
            out += self._array()
        if self._state in ("doc", "prefix") and len(self._buf) > self._max_doc:
            raise self._oversize(f"a JSON document over {self._max_doc} bytes")
        if self._state in ("suffix", "trailer") and len(self._buf) > self._max_record:
            raise self._oversize(f"JSON after the records over {self._max_record} bytes")
        return out

    def finish(self) -> bytes:
        if self._state == "start":
            out = self._start()
            if self._state == "start":
                raise MaskingError("malformed_body", "the upstream sent an empty JSON body")
        else:
            out = b""
        if self._state == "prefix":
            out += self._prefix()
            if self._state == "prefix":
                self._state = "doc"
        if self._state == "array":
            out += self._array()
            if self._state == "array":
                out += self._array_end()
        if self._state == "suffix":
            return out + self._suffix()
        if self._state == "trailer" and self._buf.strip():
            raise MaskingError("malformed_body", "the upstream sent data after the JSON array")
        if self._state == "doc":
            data, self._buf = self._buf, bytearray()
            return out + self._document(data)
        return out

    def _oversize(self, what: str) -> MaskingError:
        return MaskingError("body_too_large", f"cannot mask {what}", code=self._too_large)

    def expect_whole(self) -> None:
        """The whole body comes (decoded) in this response's pieces: buffer it as one
        document up to the document limit, and skip the streaming lexer."""
        if self._state == "start":
            self._state = "doc"

    def whole(self, data: bytes) -> bytes:
        """The whole identity-encoded body in one piece: one parse, one walk, one dump (the
        streaming lexer is for bodies too large to hold)."""
        if data.startswith(_BOM):
            data = data[3:]
        if not data.strip(_WS):
            raise MaskingError("malformed_body", "the upstream sent an empty JSON body")
        if len(data) > self._max_doc:
            raise self._oversize(f"a JSON document over {self._max_doc} bytes")
        return self._document(data)

    def _start(self) -> bytes:
        buf = self._buf
        if buf.startswith(_BOM):
            del buf[:3]
        i = 0
        while i < len(buf) and buf[i] in _WS:
            i += 1
        if i == len(buf):
            return b""
        first = buf[i]
        if first == 0x5B:  # "["
            del buf[:i]  # the buffer keeps the "[" it starts with (see _try_cut)
            self._state = "array"
            return b"["
        self._state = "prefix" if first == 0x7B and self._records_key else "doc"
        return b""

    # --- a document whose records array sits under records_key -------------------------

    def _prefix(self) -> bytes:
        """Find `"records_key": [` at depth 1; emit the masked members before it."""
        buf = self._buf
        pos, depth, key, expect = self._prefix_lex
        while True:
            m = _TOKEN_RE.match(buf, pos)
            if m is None or (m.end() == len(buf) and m.group(3)):
                break  # need more input (an unterminated string or a token at the edge)
            pos = m.end()
            string, punct = m.group(1), m.group(2)
            if punct in (b"{", b"["):
                if expect and punct == b"[" and depth == 1 and key == self._records_key:
                    return self._enter_records(m.end() - 1)
                depth += 1
            elif punct in (b"}", b"]"):
                depth -= 1
                if depth == 0:
                    self._state = "doc"
                    return b""
            expect = punct == b":" and depth == 1
            if expect:
                continue
            key = _json_string(string) if string is not None and depth == 1 else None
        self._prefix_lex = (pos, depth, key, expect)
        self._rescan_at = min(2 * len(buf), self._max_doc + 1)
        return b""

    def _enter_records(self, bracket: int) -> bytes:
        try:
            head = orjson.loads(bytes(self._buf[:bracket]) + b"null}")
        except orjson.JSONDecodeError as exc:
            raise _malformed("JSON", exc) from None
        self._walker.document(head)
        head[self._records_key] = _SENTINEL
        dumped = orjson.dumps(head)
        cut = dumped.rfind(_SENTINEL_JSON)
        del self._buf[:bracket]
        self._state = "array"
        self._keyed = True
        return self._out.scan(dumped[:cut]) + b"["

    def _suffix(self) -> bytes:
        """The members after the records array: `, "next": ... }`."""
        tail = b"{" + _SENTINEL_JSON + b":0" + bytes(self._buf)
        try:
            rest = orjson.loads(tail)
        except orjson.JSONDecodeError as exc:
            raise _malformed("JSON", exc) from None
        if not isinstance(rest, dict) or rest.pop(_SENTINEL, None) != 0:
            raise MaskingError("malformed_body", "the upstream sent a reserved JSON key")
        self._walker.document(rest)
        if not rest:
            return b"}"
        return b"," + self._out.scan(orjson.dumps(rest)[1:])

    # --- record arrays ------------------------------------------------------------------

    def _array(self) -> bytes:
        out = b""
        while len(self._buf) >= self._batch and len(self._buf) >= self._rescan_at:
            cut = self._find_cut()
            if cut is None:
                if len(self._buf) > self._max_record:
                    raise self._oversize(f"a JSON record over {self._max_record} bytes")
                self._rescan_at = min(2 * len(self._buf), self._max_record + 1)
                break
            self._rescan_at = 0
            if cut < 0:
                return out + self._array_end()
            out += self._emit(self._take(cut))
        return out

    def _find_cut(self) -> int | None:
        """The comma after the last complete element in the buffer, None if none yet, -1 if
        the array closed. Guesses are proved by parsing; an exact scan is the fallback."""
        buf = self._buf
        if self._lead is None:
            m = _FIRST_KEY_RE.match(buf, 1)
            self._lead = m.group(1) if m else b""
        limit = len(buf)
        # Guess only while the exact scan has not started (it is linear; guesses are not).
        for _ in range(3 if self._lex[0] <= 1 else 0):
            if self._lead:
                at = buf.rfind(self._lead, 2, limit)
                comma = at - 1
                while comma > 0 and buf[comma] in _WS:
                    comma -= 1
            else:
                at = comma = buf.rfind(b",", 2, limit)
            if at < 2:
                break
            if buf[comma] == 0x2C and self._parses(comma):
                return comma
            limit = at
        return self._exact_cut()

    def _parses(self, comma: int) -> bool:
        buf = self._buf
        buf[comma] = 0x5D  # "]": the buffer starts with "[", so [e1,...,ek] is one array
        try:
            with memoryview(buf) as view:
                self._batch_values = orjson.loads(view[: comma + 1])
            return True
        except orjson.JSONDecodeError:
            buf[comma] = 0x2C
            return False

    def _exact_cut(self) -> int | None:
        buf = self._buf
        pos, depth, last = self._lex
        pos = max(pos, 1)
        closed = False
        while True:
            m = _TOKEN_RE.match(buf, pos)
            if m is None or (m.end() == len(buf) and m.group(3)):
                break
            pos = m.end()
            punct = m.group(2)
            if punct is None:
                continue
            if punct in (b"{", b"["):
                depth += 1
            elif punct in (b"}", b"]"):
                depth -= 1
                if depth < 0:
                    closed = True
                    break
            elif punct == b"," and depth == 0:
                last = pos - 1
        self._lex = (pos, depth, last)
        if last > 0:
            if not self._parses(last):
                raise MaskingError("malformed_body", "the upstream sent malformed JSON")
            return last
        return -1 if closed else None

    def _take(self, comma: int) -> list[Any]:
        """Cut the buffer after the proved elements; it starts with "[" again."""
        values = self._batch_values
        self._batch_values = []
        self._buf[comma] = 0x5B
        del self._buf[:comma]
        self._lex = (0, 0, -1)
        return values

    def _emit(self, values: list[Any]) -> bytes:
        if not values:
            return b""
        self._walker.records(values)
        self._out.report.records_out += len(values)
        body = self._out.scan(orjson.dumps(values)[1:-1])
        if self._emitted:
            return b"," + body
        self._emitted = True
        return body

    def _array_end(self) -> bytes:
        """The array closed: its last elements and "]"; the members after it come later."""
        end, values = self._close_position()
        del self._buf[: end + 1]
        self._lex = (0, 0, -1)
        self._state = "suffix" if self._keyed else "trailer"
        return self._emit(values) + b"]"

    def _close_position(self) -> tuple[int, list[Any]]:
        """The array's closing bracket and its elements. The buffer starts with "[", so a
        prefix that parses as an array ends exactly there: try the last few "]", then lex."""
        buf = self._buf
        end = len(buf)
        for _ in range(4):
            end = buf.rfind(b"]", 1, end)
            if end < 0:
                break
            try:
                return end, orjson.loads(bytes(buf[: end + 1]))
            except orjson.JSONDecodeError:
                continue
        pos, depth = 1, 0
        while True:
            m = _TOKEN_RE.match(buf, pos)
            if m is None:
                raise MaskingError("malformed_body", "the upstream sent truncated JSON")
            pos = m.end()
            punct = m.group(2)
            if punct in (b"{", b"["):
                depth += 1
            elif punct in (b"}", b"]"):
                depth -= 1
                if depth < 0:
                    break
        try:
            return pos - 1, orjson.loads(bytes(buf[:pos]))
        except orjson.JSONDecodeError as exc:
            raise _malformed("JSON", exc) from None

    # --- any other document ---------------------------------------------------------------

    def _document(self, data: bytes | bytearray) -> bytes:
        try:
            value = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise _malformed("JSON", exc) from None
        value = self._walker.document(value)
        records = value.get(self._out.plan.records_key or "") if isinstance(value, dict) else value
        self._out.report.records_out += len(records) if isinstance(records, list) else 1
        self._state = "done"
        return self._out.scan(orjson.dumps(value))


def _json_string(token: bytes) -> str | None:
    try:
        value = orjson.loads(token)
    except orjson.JSONDecodeError:
        return None
    return value if isinstance(value, str) else None


class NdjsonCodec:
    """Newline-delimited JSON, line by line; one bad line fails the whole response."""

    def __init__(self, out: _Output, config: MaskingConfig) -> None:
        self._out = out
        self._max = config.max_record_bytes
        self._too_large = "payload_too_large" if config.oversize_status == 413 else "upstream_error"
        self._buf = b""
        self._line = 0

    def feed(self, data: bytes) -> bytes:
        buf = self._buf + data
        end = buf.rfind(b"\n")
        if end < 0:
            self._buf = buf
            if len(buf) > self._max:
                raise MaskingError(
                    "body_too_large", f"an NDJSON line over {self._max} bytes", code=self._too_large
                )
            return b""
        self._buf = buf[end + 1 :]
        return self._lines(buf[:end].split(b"\n"))

    def finish(self) -> bytes:
        buf, self._buf = self._buf, b""
        return self._lines([buf]) if buf.strip() else b""

    def _lines(self, lines: list[bytes]) -> bytes:
        values = []
        for line in lines:
            self._line += 1
            if line.startswith(_BOM) and self._line == 1:
                line = line[3:]
            if not line.strip():
                continue
            try:
                values.append(orjson.loads(line))
            except orjson.JSONDecodeError as exc:
                raise _malformed(f"NDJSON (line {self._line})", exc) from None
        if not values:
            return b""
        self._out.walker.records(values)
        self._out.report.records_out += len(values)
        return self._out.scan(b"\n".join(map(orjson.dumps, values)) + b"\n")


class CsvCodec:
    """CSV or TSV by header: quoted cells, quoted newlines and a BOM; any charset Python has."""

    def __init__(self, out: _Output, config: MaskingConfig, delimiter: str, charset: str) -> None:
        self._out = out
        self._delimiter = delimiter
        self._max = config.max_record_bytes
        self._too_large = "payload_too_large" if config.oversize_status == 413 else "upstream_error"
        if charset in ("utf-8", "utf8"):
            charset = "utf-8-sig"
        try:
            self._decoder = codecs.getincrementaldecoder(charset)("strict")
        except LookupError:
            raise MaskingError("unsupported_charset", f"unknown charset {charset!r}") from None
        self._text = ""
        self._header: list[str] | None = None
        self._masks: list[tuple[int, Callable[[Any, bytes], str], str, str]] = []
        self._removed: list[tuple[int, str]] = []
        self._keep: list[int] | None = None
        self._terminator = "\r\n"

    def feed(self, data: bytes) -> bytes:
        try:
            self._text += self._decoder.decode(data)
        except UnicodeDecodeError as exc:
            raise _malformed("text", exc) from None
        end = self._record_end(self._text)
        if end <= 0:
            if len(self._text) > self._max:
                raise MaskingError(
                    "body_too_large", f"a CSV record over {self._max} bytes", code=self._too_large
                )
            return b""
        block, self._text = self._text[:end], self._text[end:]
        return self._rows(block)

    def finish(self) -> bytes:
        try:
            self._text += self._decoder.decode(b"", final=True)
        except UnicodeDecodeError as exc:
            raise _malformed("text", exc) from None
        block, self._text = self._text, ""
        if block.count('"') % 2:
            raise MaskingError("malformed_body", "the upstream sent CSV with an unclosed quote")
        return self._rows(block) if block else b""

    @staticmethod
    def _record_end(text: str) -> int:
        """Just after the last newline outside quotes (an even number of quotes before it)."""
        end = text.rfind("\n")
        for _ in range(8):
            if end < 0 or text.count('"', 0, end) % 2 == 0:
                return end + 1
            end = text.rfind("\n", 0, end)
        quotes = 0
        last = 0
        offset = 0
        for line in text.split("\n")[:-1]:
            quotes += line.count('"')
            offset += len(line) + 1
            if quotes % 2 == 0:
                last = offset
        return last

    def _parse(self, block: str) -> list[list[str]]:
        reader = csv.reader(io.StringIO(block, newline=""), delimiter=self._delimiter, strict=True)
        try:
            return list(reader)
        except csv.Error as exc:
            raise _malformed("CSV", exc) from None

    def _rows(self, block: str) -> bytes:
        sink = io.StringIO()
        if self._header is None:
            block = self._separator_line(block, sink)
        rows = self._parse(block)
        if self._header is None and rows:
            if self._delimiter_of(rows[0], block):
                rows = self._parse(block)
            header = self._start(rows.pop(0), block)
            csv.writer(sink, delimiter=self._delimiter, lineterminator=self._terminator).writerow(
                header if self._keep is None else [header[i] for i in self._keep]
            )
        writer = csv.writer(sink, delimiter=self._delimiter, lineterminator=self._terminator)
        key = self._out.walker.key
        counts = self._out.report.masked_fields
        observe = self._out.plan.observe  # data-quality counts, from the cells visited anyway
        for index, fn, label, strategy in self._masks:
            n = 0
            for row in rows:
                try:
                    value = row[index]
                except IndexError:  # a short row: nothing in this column
                    if observe is not None:
                        observe.value(label, strategy, None)
                    continue
                if observe is not None:
                    observe.value(label, strategy, value)
                if value:
                    row[index] = fn(value, key)
                    n += 1
            counts[label] = counts.get(label, 0) + n
        for index, label in self._removed:
            counts[label] = counts.get(label, 0) + sum(index < len(row) for row in rows)
        keep = self._keep
        if keep is not None:
            width = len(self._header or [])
            pick = _picker(keep)
            writer.writerows(
                pick(row) if len(row) == width else self._kept(row, keep, width) for row in rows
            )
        else:
            writer.writerows(rows)
        self._out.report.records_out += len(rows)
        return self._out.scan(sink.getvalue().encode("utf-8"))

    def _separator_line(self, block: str, sink: io.StringIO) -> str:
        """Excel's `sep=;` first line names the delimiter: use it, and pass the line on."""
        first, newline, rest = block.lstrip("\ufeff").partition("\n")
        line = first.rstrip("\r")
        if line.lower().startswith("sep=") and len(line) == 5:
            self._delimiter = line[4]
            sink.write(first + newline)
            return rest
        return block

    def _delimiter_of(self, header: list[str], block: str) -> bool:
        """A header that names none of the classified columns under the declared delimiter,
        but does under another one (`;`, `|`, tab, comma: CSV labelled TSV and the like):
        read the body with that one. True if the delimiter changed."""
        columns = self._out.plan.by_column
        if not columns or any(norm_name(cell.lstrip("\ufeff")) in columns for cell in header):
            return False
        line = block.split("\n", 1)[0]
        for other in (",", ";", "|", "\t"):
            if other == self._delimiter or other not in line:
                continue
            try:
                cells = next(csv.reader([line], delimiter=other))
            except csv.Error:  # not readable that way either (a stray CR): not this one
                continue
            if any(norm_name(cell.lstrip("\ufeff")) in columns for cell in cells):
                self._delimiter = other
                return True
        return False

    @staticmethod
    def _kept(row: list[str], keep: list[int], width: int) -> list[str]:
        """A ragged row without the removed columns; cells past the header stay."""
        return [row[i] for i in keep if i < len(row)] + row[width:]

    def _start(self, header: list[str], block: str) -> list[str]:
        if header and header[0].startswith("\ufeff"):
            header[0] = header[0][1:]
        self._header = header
        first_line = block.split("\n", 1)[0]
        self._terminator = "\r\n" if first_line.endswith("\r") else "\n"
        removed: set[int] = set()
        for index, name in enumerate(header):
            rule = self._out.plan.by_column.get(norm_name(name))
            if rule is None:
                continue
            if rule.fn is None:
                removed.add(index)
                self._removed.append((index, rule.label))
            else:
                self._masks.append((index, rule.fn, rule.label, rule.strategy))
        if removed:
            self._keep = [i for i in range(len(header)) if i not in removed]
        if self._out.plan.by_column and not self._masks and not removed:
            # No header row, other names (姓名, 身份证号) or another layout: which cells are
            # classified cannot be told, so nothing is passed on.
            raise MaskingError(
                "unmaskable_csv",
                "the CSV header names none of the dataset's classified columns; name them in "
                "the catalog (a field's `column`) or send the header",
            )
        return header


def _picker(keep: list[int]) -> Callable[[list[str]], Sequence[str]]:
    """The cells at `keep` of a row, as a sequence: itemgetter is fastest, but with one
    index it returns the bare cell (which csv would write one character per column) and with
    none it cannot be built (every column removed)."""
    if len(keep) > 1:
        return operator.itemgetter(*keep)
    return lambda row: [row[i] for i in keep]


class Pipeline:
    """Content-Encoding decoding, then a codec; checks the body length the upstream announced."""

    def __init__(
        self,
        chain: Chain,
        codec: _Codec,
        content_type: str,
        report: MaskReport,
        walker: Walker,
        expected_length: int | None,
        on_finish: Callable[[MaskReport], None] | None = None,
    ) -> None:
        self.content_type = content_type
        self.report = report
        self._chain = chain
        self._codec = codec
        self._walker = walker
        self._expected = expected_length
        self._on_finish = on_finish
        self._failed: MaskingError | None = None

    def whole(self, body: bytes) -> bytes:
        """Mask a body that was read whole (small responses). An identity-encoded JSON body
        is parsed once, walked and dumped; anything else goes through `feed` and `finish`."""
        whole = getattr(self._codec, "whole", None)
        if whole is None or not self._chain.identity:
            expect_whole = getattr(self._codec, "expect_whole", None)
            if expect_whole is not None:
                expect_whole()
            return self.feed(body) + self.finish()
        if self._failed is not None:
            raise self._failed
        try:
            if self._expected is not None and len(body) != self._expected:
                raise MaskingError(
                    "length_mismatch",
                    f"the upstream announced {self._expected} bytes and sent {len(body)}",
                )
            out: bytes = whole(body)
        except MaskingError as exc:
            self._failed = exc
            raise
        self._report()
        return out

    def feed(self, chunk: bytes) -> bytes:
        if self._failed is not None:
            raise self._failed
        try:
            return b"".join([self._codec.feed(piece) for piece in self._chain.decode(chunk)])
        except MaskingError as exc:
            self._failed = exc
            raise

    def finish(self) -> bytes:
        if self._failed is not None:
            raise self._failed
        try:
            if self._expected is not None and self._chain.bytes_in != self._expected:
                raise MaskingError(
                    "length_mismatch",
                    f"the upstream announced {self._expected} bytes "
                    f"and sent {self._chain.bytes_in}",
                )
            out = b"".join([self._codec.feed(piece) for piece in self._chain.flush()])
            out += self._codec.finish()
        except MaskingError as exc:
            self._failed = exc
            raise
        self._report()
        return out

    def _report(self) -> None:
        """Hand the report (the walker counted into it) to `on_finish`."""
        if self._on_finish is not None:
            self._on_finish(self.report)


def open_transform(
    plan: MaskPlan,
    config: MaskingConfig,
    *,
    content_type: str | None,
    content_encoding: str | None,
    content_length: int | None,
    key: bytes,
    on_finish: Callable[[MaskReport], None] | None = None,
) -> Pipeline:
    """A transform for one response body; MaskingError when it cannot be masked safely."""
    kind, params = _media_type(content_type)
    charset = params.get("charset", "utf-8")
    too_large = "payload_too_large" if config.oversize_status == 413 else "upstream_error"
    report = MaskReport()
    walker = Walker(plan, key, config.redact_token, report.masked_fields, report.findings)
    out = _Output(plan, walker, report)
    codec: _Codec
    if kind in JSON_TYPES or (kind.startswith("application/") and kind.endswith("+json")):
        _require_utf8(charset)
        codec, result_type = JsonCodec(out, config), kind
    elif kind in NDJSON_TYPES:
        _require_utf8(charset)
        codec, result_type = NdjsonCodec(out, config), kind
    elif kind in CSV_TYPES:
        codec = CsvCodec(out, config, CSV_TYPES[kind], charset)
        result_type = f"{kind}; charset=utf-8"
    else:
        shown = kind or "none"
        raise MaskingError(
            "unsupported_content_type", f"cannot mask a response of content type {shown}"
        )
    chain = Chain(content_encoding, config.max_decoded_bytes, config.max_inflate_ratio, too_large)
    return Pipeline(chain, codec, result_type, report, walker, content_length, on_finish)


def _require_utf8(charset: str) -> None:
    if charset.replace("_", "-") not in ("utf-8", "utf8"):
        raise MaskingError("unsupported_charset", f"JSON must be UTF-8, not {charset!r}")


__all__ = ["BodyTransform", "MaskReport", "Pipeline", "media_type", "open_transform"]
