//! An incremental decoder for Bulk API 2.0 CSV results, fed one byte chunk at a time.
//!
//! Fields may be quoted, with `""` for an embedded quote and line breaks kept inside quotes.
//! Rows end with LF or CRLF. An empty field, quoted or not, is `None`, because Bulk results
//! write null and the empty string alike. The decoder works on bytes: every byte it acts on
//! (quote, delimiter, CR, LF) is ASCII and never part of a multi-byte UTF-8 sequence, so a
//! character split across two chunks is joined before the field is checked as UTF-8. A UTF-8
//! byte order mark at the start of the body is skipped, even when it is split across chunks.

/// A malformed CSV body, with the 1-based row where the problem was found.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("CSV row {row}: {problem}")]
pub(crate) struct CsvError {
    pub row: u64,
    pub problem: String,
}

/// Largest CSV row, line breaks inside quotes included. A Salesforce long text area stores at
/// most 131,072 characters, so a real record stays far below it, and a malformed or hostile
/// body cannot grow one row without bound.
pub(crate) const MAX_ROW_BYTES: usize = 16 * 1024 * 1024;

/// A decoded row: one entry per column, `None` for an empty value.
pub(crate) type CsvRow = Vec<Option<String>>;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// At the start of a field.
    FieldStart,
    /// Inside a field that did not start with a quote.
    Unquoted,
    /// Inside a quoted field.
    Quoted,
    /// After a quote inside a quoted field: a second quote is a literal one, anything else
    /// must end the field.
    QuoteInQuoted,
    /// After a CR outside quotes, which must be followed by LF. `blank` is set when the CR
    /// began the line, so that a CRLF blank line is dropped like an LF one.
    CarriageReturn { blank: bool },
}

/// The UTF-8 encoding of U+FEFF, which some CSV writers put before the first byte.
const BOM: &[u8] = b"\xEF\xBB\xBF";

/// The decoder's position in the body between two chunks.
pub(crate) struct CsvDecoder {
    delimiter: u8,
    state: State,
    field: Vec<u8>,
    row: CsvRow,
    /// Rows finished so far, counting from 1 for error messages.
    row_number: u64,
    /// Bytes of the current row read so far.
    row_bytes: usize,
    /// The first bytes of the body while they may still be a byte order mark, or `None` once
    /// that is decided.
    head: Option<Vec<u8>>,
}

impl CsvDecoder {
    pub(crate) fn new(delimiter: u8) -> CsvDecoder {
        CsvDecoder {
            delimiter,
            state: State::FieldStart,
            field: Vec::new(),
            row: Vec::new(),
            row_number: 1,
            row_bytes: 0,
            head: Some(Vec::with_capacity(BOM.len())),
        }
    }

    fn error(&self, problem: impl Into<String>) -> CsvError {
        CsvError {
            row: self.row_number,
            problem: problem.into(),
        }
    }

    fn end_field(&mut self) -> Result<(), CsvError> {
        let bytes = std::mem::take(&mut self.field);
        let value = if bytes.is_empty() {
            None
        } else {
            let text = String::from_utf8(bytes).map_err(|error| {
                self.error(format!(
                    "field {} is not valid UTF-8: {error}",
                    self.row.len() + 1
                ))
            })?;
            Some(text)
        };
        self.row.push(value);
        Ok(())
    }

    fn end_row(&mut self, rows: &mut Vec<CsvRow>) -> Result<(), CsvError> {
        self.end_field()?;
        let row = std::mem::take(&mut self.row);
        // A blank line is one empty field that never started; Bulk results contain none, but
        // a trailing blank line is harmless.
        let blank = row.len() == 1 && row[0].is_none() && self.state == State::FieldStart;
        if !blank {
            rows.push(row);
        }
        self.row_number += 1;
        self.row_bytes = 0;
        self.state = State::FieldStart;
        Ok(())
    }

    /// Decodes one chunk and appends every row it completes to `rows`.
    pub(crate) fn feed(&mut self, chunk: &[u8], rows: &mut Vec<CsvRow>) -> Result<(), CsvError> {
        let mut chunk = chunk;
        if let Some(head) = &mut self.head {
            let taken = (BOM.len() - head.len()).min(chunk.len());
            head.extend_from_slice(&chunk[..taken]);
            chunk = &chunk[taken..];
            if BOM.starts_with(head) && head.len() < BOM.len() {
                return Ok(());
            }
            self.end_head(rows)?;
        }
        self.decode(chunk, rows)
    }

    /// Decides on the buffered first bytes: drops a complete byte order mark, or decodes them
    /// as data.
    fn end_head(&mut self, rows: &mut Vec<CsvRow>) -> Result<(), CsvError> {
        let Some(head) = self.head.take() else {
            return Ok(());
        };
        if head == BOM {
            Ok(())
        } else {
            self.decode(&head, rows)
        }
    }

    fn decode(&mut self, chunk: &[u8], rows: &mut Vec<CsvRow>) -> Result<(), CsvError> {
        for &byte in chunk {
            self.row_bytes += 1;
            if self.row_bytes > MAX_ROW_BYTES {
                return Err(self.error(format!(
                    "the row is longer than the cap of {MAX_ROW_BYTES} bytes"
                )));
            }
            match self.state {
                State::FieldStart | State::Unquoted => {
                    if byte == b'"' && self.state == State::FieldStart {
                        self.state = State::Quoted;
                    } else if byte == self.delimiter {
                        self.end_field()?;
                        self.state = State::FieldStart;
                    } else if byte == b'\n' {
                        self.end_row(rows)?;
                    } else if byte == b'\r' {
                        self.state = State::CarriageReturn {
                            blank: self.state == State::FieldStart,
                        };
                    } else if byte == b'"' {
                        return Err(self.error("a quote inside an unquoted field"));
                    } else {
                        self.field.push(byte);
                        self.state = State::Unquoted;
                    }
                }
                State::Quoted => {
                    if byte == b'"' {
                        self.state = State::QuoteInQuoted;
                    } else {
                        self.field.push(byte);
                    }
                }
                State::QuoteInQuoted => {
                    if byte == b'"' {
                        self.field.push(b'"');
                        self.state = State::Quoted;
                    } else if byte == self.delimiter {
                        self.end_field()?;
                        self.state = State::FieldStart;
                    } else if byte == b'\n' {
                        self.state = State::Unquoted;
                        self.end_row(rows)?;
                    } else if byte == b'\r' {
                        self.state = State::CarriageReturn { blank: false };
                    } else {
                        return Err(self.error(format!(
                            "unexpected {:?} after the closing quote of field {}",
                            char::from(byte),
                            self.row.len() + 1
                        )));
                    }
                }
                State::CarriageReturn { blank } => {
                    if byte != b'\n' {
                        return Err(self.error("a CR that is not followed by LF"));
                    }
                    self.state = if blank {
                        State::FieldStart
                    } else {
                        State::Unquoted
                    };
                    self.end_row(rows)?;
                }
            }
        }
        Ok(())
    }

    /// Ends the body: completes a last row without a line break, or fails inside a quoted
    /// field, which means the body was cut short.
    pub(crate) fn finish(mut self, rows: &mut Vec<CsvRow>) -> Result<(), CsvError> {
        self.end_head(rows)?;
        match self.state {
            State::Quoted => {
                Err(self
                    .error("the body ends inside a quoted field, so the response was cut short"))
            }
            State::CarriageReturn { .. } => Err(self.error("the body ends with a CR without LF")),
            State::FieldStart if self.row.is_empty() => Ok(()),
            _ => {
                self.state = State::Unquoted;
                self.end_row(rows)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_chunks(chunks: &[&[u8]]) -> Result<Vec<CsvRow>, CsvError> {
        let mut decoder = CsvDecoder::new(b',');
        let mut rows = Vec::new();
        for chunk in chunks {
            decoder.feed(chunk, &mut rows)?;
        }
        decoder.finish(&mut rows)?;
        Ok(rows)
    }

    fn row(values: &[Option<&str>]) -> CsvRow {
        values.iter().map(|v| v.map(str::to_string)).collect()
    }

    /// Quoted line breaks, doubled quotes, CRLF, an empty value and a character of two, three
    /// and four bytes.
    const TRICKY: &str = "\"Id\",\"Name\",\"Note\"\r\n\
        \"001A\",\"Caf\u{e9} \"\"Nord\"\"\",\"line one\nline two\"\r\n\
        \"001B\",\"\",\"\u{20ac}\u{1F3E5},x\"\r\n";

    fn tricky_rows() -> Vec<CsvRow> {
        vec![
            row(&[Some("Id"), Some("Name"), Some("Note")]),
            row(&[
                Some("001A"),
                Some("Caf\u{e9} \"Nord\""),
                Some("line one\nline two"),
            ]),
            row(&[Some("001B"), None, Some("\u{20ac}\u{1F3E5},x")]),
        ]
    }

    #[test]
    fn whole_body_decodes() {
        assert_eq!(decode_chunks(&[TRICKY.as_bytes()]).unwrap(), tricky_rows());
    }

    #[test]
    fn every_split_point_decodes_alike() {
        let bytes = TRICKY.as_bytes();
        for split in 0..=bytes.len() {
            let (head, tail) = bytes.split_at(split);
            let rows = decode_chunks(&[head, tail])
                .unwrap_or_else(|error| panic!("split at byte {split}: {error}"));
            assert_eq!(rows, tricky_rows(), "split at byte {split}");
        }
    }

    #[test]
    fn byte_by_byte_decodes_alike() {
        let chunks: Vec<&[u8]> = TRICKY.as_bytes().chunks(1).collect();
        assert_eq!(decode_chunks(&chunks).unwrap(), tricky_rows());
    }

    #[test]
    fn lf_endings_and_unquoted_fields() {
        let rows = decode_chunks(&[b"Id,Name\n1,Ann\n2,\n"]).unwrap();
        assert_eq!(
            rows,
            vec![
                row(&[Some("Id"), Some("Name")]),
                row(&[Some("1"), Some("Ann")]),
                row(&[Some("2"), None]),
            ]
        );
    }

    #[test]
    fn last_row_without_line_break() {
        let rows = decode_chunks(&[b"\"a\",\"b\"\n\"1\",\"2\""]).unwrap();
        assert_eq!(rows[1], row(&[Some("1"), Some("2")]));
        let rows = decode_chunks(&[b"a\n\"\""]).unwrap();
        assert_eq!(rows[1], row(&[None]));
    }

    #[test]
    fn other_delimiters() {
        let mut decoder = CsvDecoder::new(b'|');
        let mut rows = Vec::new();
        decoder.feed(b"\"a\"|\"b,c\"\n", &mut rows).unwrap();
        decoder.finish(&mut rows).unwrap();
        assert_eq!(rows, vec![row(&[Some("a"), Some("b,c")])]);
    }

    /// A blank line ending in CRLF became a row of one empty value,
    /// while the same line ending in LF was dropped.
    #[test]
    fn crlf_blank_line_dropped() {
        let crlf = decode_chunks(&[b"a,b\r\n1,2\r\n\r\n"]).unwrap();
        let lf = decode_chunks(&[b"a,b\n1,2\n\n"]).unwrap();
        assert_eq!(crlf, lf);
        assert_eq!(crlf.len(), 2);
    }

    #[test]
    fn bom_skipped_at_any_split() {
        let body = b"\xEF\xBB\xBF\"Id\"\r\n\"001\"\r\n";
        let expected = vec![row(&[Some("Id")]), row(&[Some("001")])];
        for split in 0..=body.len() {
            let (head, tail) = body.split_at(split);
            let rows = decode_chunks(&[head, tail])
                .unwrap_or_else(|error| panic!("split at byte {split}: {error}"));
            assert_eq!(rows, expected, "split at byte {split}");
        }
        let bytes: Vec<&[u8]> = body.chunks(1).collect();
        assert_eq!(decode_chunks(&bytes).unwrap(), expected);
    }

    #[test]
    fn bom_prefix_alone_is_data() {
        let error = decode_chunks(&[b"\xEF\xBB", b"x\n"]).unwrap_err();
        assert!(error.problem.contains("UTF-8"), "{error}");
        assert!(decode_chunks(&[b"\xEF\xBB\xBF"]).unwrap().is_empty());
        assert_eq!(decode_chunks(&[b"a"]).unwrap(), vec![row(&[Some("a")])]);
    }

    #[test]
    fn malformed_bodies_fail() {
        let cut = decode_chunks(&[b"\"Id\"\n\"001"]).unwrap_err();
        assert!(cut.problem.contains("cut short"), "{cut}");
        assert_eq!(cut.row, 2);

        let stray = decode_chunks(&[b"\"a\"x,\"b\"\n"]).unwrap_err();
        assert!(stray.problem.contains("after the closing quote"), "{stray}");

        let bare = decode_chunks(&[b"a\"b\n"]).unwrap_err();
        assert!(bare.problem.contains("unquoted"), "{bare}");

        let invalid = decode_chunks(&[b"\"\xff\xfe\"\n"]).unwrap_err();
        assert!(invalid.problem.contains("UTF-8"), "{invalid}");

        let lone_cr = decode_chunks(&[b"a\rb\n"]).unwrap_err();
        assert!(lone_cr.problem.contains("CR"), "{lone_cr}");
    }

    #[test]
    fn row_over_cap_rejected() {
        let mut decoder = CsvDecoder::new(b',');
        let mut rows = Vec::new();
        decoder.feed(b"\"Id\"\n\"", &mut rows).unwrap();
        let chunk = vec![b'x'; 1 << 20];
        let mut error = None;
        for _ in 0..=(MAX_ROW_BYTES >> 20) {
            if let Err(found) = decoder.feed(&chunk, &mut rows) {
                error = Some(found);
                break;
            }
        }
        let error = error.expect("the long row is rejected");
        assert_eq!(error.row, 2);
        assert!(error.problem.contains("cap"), "{error}");
        assert_eq!(rows.len(), 1, "the header row was decoded");
    }
}
