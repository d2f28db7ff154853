//! Many spooled rows in one redb entry: `[0][rows: u32 LE]`, then `[len: u32 LE][record]` per
//! row. A commit writes its rows as one entry, keyed by the first row's sequence number: one
//! B-tree insert per commit instead of one per row. An entry written before segments holds a
//! single record, whose first byte (the record format) is never 0.

use super::record::SpoolRow;

/// The first byte of a segment.
const TAG: u8 = 0;
const HEADER: usize = 5;
const LEN: usize = 4;

/// The rows gathered for the next commit, laid out as the segment they are written as.
pub(super) struct Segment {
    bytes: Vec<u8>,
    rows: u32,
}

impl Default for Segment {
    fn default() -> Self {
        Segment {
            bytes: vec![TAG, 0, 0, 0, 0],
            rows: 0,
        }
    }
}

impl Segment {
    /// Appends a row; returns its record's length.
    pub(super) fn push(&mut self, row: &SpoolRow, appended_at_ms: u64) -> u64 {
        let at = self.bytes.len();
        self.bytes.extend_from_slice(&[0; LEN]);
        row.encode_into(appended_at_ms, &mut self.bytes);
        let len = self.bytes.len() - at - LEN;
        // A record is a row bound for one ClickHouse insert, far below 4 GiB (ingest bounds
        // every payload); redb could not store a larger entry either.
        self.bytes[at..at + LEN].copy_from_slice(&(len as u32).to_le_bytes());
        self.rows += 1;
        len as u64
    }

    pub(super) fn rows(&self) -> u32 {
        self.rows
    }

    pub(super) fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// The entry to write.
    pub(super) fn finish(&mut self) -> &[u8] {
        self.bytes[1..HEADER].copy_from_slice(&self.rows.to_le_bytes());
        &self.bytes
    }

    /// Puts `later`'s rows after these (a failed commit's rows before those appended since).
    pub(super) fn extend(&mut self, later: Segment) {
        self.bytes.extend_from_slice(&later.bytes[HEADER..]);
        self.rows += later.rows;
    }
}

/// How many rows an entry holds, and their records' bytes.
pub(super) fn rows(entry: &[u8]) -> (u64, u64) {
    match segment_rows(entry) {
        Some(rows) => {
            let framing = HEADER as u64 + LEN as u64 * rows;
            (rows, (entry.len() as u64).saturating_sub(framing))
        }
        None => (1, entry.len() as u64),
    }
}

/// A segment's rows; `None` for a single record, and for an entry too broken to be a segment,
/// which then reads as one row that does not decode (so it is kept aside, and counted).
fn segment_rows(entry: &[u8]) -> Option<u64> {
    if entry.first() != Some(&TAG) {
        return None;
    }
    let rows = entry.get(1..HEADER)?.try_into().ok()?;
    Some(u64::from(u32::from_le_bytes(rows))).filter(|&rows| rows > 0)
}

/// A row whose record cannot be cut out of its entry: why, and the bytes from there on.
pub(super) type Broken<'a> = (&'static str, &'a [u8]);

/// The records of an entry, one per row in order. Past a point where a segment does not parse,
/// the rest of its bytes come once as a [`Broken`] row and the remaining rows as empty ones,
/// so every row keeps its sequence number.
pub(super) fn records(entry: &[u8]) -> impl Iterator<Item = Result<&[u8], Broken<'_>>> {
    let (rows, mut rest) = match segment_rows(entry) {
        Some(rows) => (rows, &entry[HEADER..]),
        None => (0, entry),
    };
    let single = segment_rows(entry).is_none().then_some(Ok(entry));
    let framed = (0..rows).map(move |_| {
        let len = rest
            .get(..LEN)
            .and_then(|b| b.try_into().ok())
            .map(|b| u32::from_le_bytes(b) as usize);
        match len.and_then(|len| rest.get(LEN..LEN + len)) {
            Some(record) => {
                rest = &rest[LEN + record.len()..];
                Ok(record)
            }
            None => Err((
                "the spool entry ends inside this row",
                std::mem::take(&mut rest),
            )),
        }
    });
    single.into_iter().chain(framed)
}

#[cfg(test)]
mod tests {
    use super::super::record::tests::dead_letter;
    use super::*;

    #[test]
    fn a_segment_reads_back_row_by_row_and_counts_its_record_bytes() {
        let mut first = Segment::default();
        let mut lens = vec![first.push(&dead_letter(1), 10)];
        let mut later = Segment::default();
        lens.push(later.push(&dead_letter(2), 11));
        lens.push(later.push(&dead_letter(3), 12));
        first.extend(later);
        assert_eq!(first.rows(), 3);
        let entry = first.finish().to_vec();
        let back: Vec<(u64, SpoolRow)> = records(&entry)
            .map(|r| SpoolRow::decode(r.unwrap()).unwrap())
            .collect();
        assert_eq!(
            back,
            [
                (10, dead_letter(1)),
                (11, dead_letter(2)),
                (12, dead_letter(3))
            ]
        );
        assert_eq!(rows(&entry), (3, lens.iter().sum()));
        assert!(Segment::default().is_empty());
    }

    #[test]
    fn an_entry_of_one_record_is_one_row() {
        let record = dead_letter(4).encode(5);
        assert_eq!(rows(&record), (1, record.len() as u64));
        let back: Vec<_> = records(&record).collect();
        assert_eq!(back, [Ok(record.as_slice())]);
    }

    #[test]
    fn a_cut_segment_keeps_every_row_numbered() {
        let mut segment = Segment::default();
        for i in 0..3 {
            segment.push(&dead_letter(i), 0);
        }
        let entry = segment.finish().to_vec();
        let cut = &entry[..entry.len() - 10];
        let back: Vec<_> = records(cut).collect();
        assert_eq!(back.len(), 3);
        assert!(back[0].is_ok() && back[1].is_ok());
        let (reason, rest) = back[2].unwrap_err();
        assert_eq!(reason, "the spool entry ends inside this row");
        assert!(!rest.is_empty());
        // A header that claims more rows than there are: the extra ones come empty.
        let mut claims_more = cut.to_vec();
        claims_more[1..HEADER].copy_from_slice(&5u32.to_le_bytes());
        let back: Vec<_> = records(&claims_more).collect();
        assert_eq!(back.len(), 5);
        assert_eq!(
            back[4],
            Err(("the spool entry ends inside this row", &[][..]))
        );
    }
}
