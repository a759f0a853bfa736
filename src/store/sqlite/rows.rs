//! Inserts of many rows in few statements: a writer's rows go in chunks
//! of [`SIZES`] rows only, so a statement has four shapes, each text made
//! once and each kept prepared by sqlx (parsing a statement of a new size
//! each batch cost more than its inserts). Each statement is a round trip
//! to sqlx's SQLite thread, a wake-up each way, which costs more than a
//! row: a batch of 15 rows takes 6 statements, not 15.

use std::sync::{Arc, OnceLock};

/// Rows a statement, largest first.
pub const SIZES: [usize; 4] = [64, 16, 4, 1];

/// An insert of many rows: its text before the rows, one row's values,
/// and its text after them.
pub struct RowsStatement {
    head: &'static str,
    row: &'static str,
    tail: &'static str,
    made: OnceLock<Vec<(usize, Arc<str>)>>,
}

impl RowsStatement {
    pub const fn new(head: &'static str, row: &'static str, tail: &'static str) -> Self {
        Self { head, row, tail, made: OnceLock::new() }
    }

    /// The values a row binds.
    pub fn binds(&self) -> usize {
        self.row.matches('?').count()
    }

    /// The statement of `rows` rows; made once for each of [`SIZES`].
    pub fn text(&self, rows: usize) -> Arc<str> {
        let made = self.made.get_or_init(|| SIZES.iter().map(|&n| (n, self.made_for(n))).collect());
        match made.iter().find(|(n, _)| *n == rows) {
            Some((_, sql)) => sql.clone(),
            None => self.made_for(rows),
        }
    }

    fn made_for(&self, rows: usize) -> Arc<str> {
        Arc::from(format!("{}{}{}", self.head, vec![self.row; rows].join(", "), self.tail))
    }
}

/// `rows` cut into chunks of [`SIZES`] rows, largest first.
pub fn chunks<T>(mut rows: &[T]) -> impl Iterator<Item = &[T]> {
    std::iter::from_fn(move || {
        let size = SIZES.into_iter().find(|&size| size <= rows.len())?;
        let (chunk, rest) = rows.split_at(size);
        rows = rest;
        Some(chunk)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_go_in_few_statements_of_four_sizes() {
        let sizes = |n: usize| {
            let rows: Vec<usize> = (0..n).collect();
            chunks(&rows).map(<[usize]>::len).collect::<Vec<_>>()
        };
        assert_eq!(sizes(0), Vec::<usize>::new());
        assert_eq!(sizes(1), [1]);
        assert_eq!(sizes(15), [4, 4, 4, 1, 1, 1]);
        assert_eq!(sizes(150), [64, 64, 16, 4, 1, 1]);
        let rows: Vec<usize> = (0..150).collect();
        let back: Vec<usize> = chunks(&rows).flatten().copied().collect();
        assert_eq!(back, rows, "every row once, in order");
    }

    #[test]
    fn a_statement_has_its_rows_between_its_head_and_tail() {
        static TWO: RowsStatement =
            RowsStatement::new("INSERT INTO t VALUES ", "(?, 1, ?)", " ON CONFLICT DO NOTHING");
        assert_eq!(TWO.binds(), 2);
        assert_eq!(&*TWO.text(1), "INSERT INTO t VALUES (?, 1, ?) ON CONFLICT DO NOTHING");
        assert_eq!(TWO.text(4).matches("(?, 1, ?)").count(), 4);
        assert!(Arc::ptr_eq(&TWO.text(16), &TWO.text(16)), "made once");
        assert_eq!(TWO.text(3).matches('?').count(), 6, "any other size made when asked");
    }
}
