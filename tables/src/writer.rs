//! A Parquet file built row by row: rows collect in Arrow builders and go to the writer in
//! batches, the writer closes a row group every [`ROW_GROUP_ROWS`] rows, so what is held
//! is one batch, one open row group and the compressed file so far.

use std::sync::Arc;

use arrow_array::builder::{
    BooleanBuilder, Float64Builder, Int64Builder, StringBuilder, TimestampMillisecondBuilder,
};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::SchemaRef;
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::errors::ParquetError;
use parquet::file::properties::WriterProperties;

use crate::schema::{Column, Kind, arrow_schema};

/// Rows per Arrow batch handed to the writer.
const BATCH_ROWS: usize = 8_192;
/// Rows per Parquet row group.
pub const ROW_GROUP_ROWS: usize = 65_536;

/// One cell.
#[derive(Debug, Clone, Copy)]
pub enum Cell<'a> {
    /// A `string` column.
    S(Option<&'a str>),
    /// A `timestamp` column: milliseconds since the epoch, UTC.
    T(Option<i64>),
    /// A `double` column.
    F(Option<f64>),
    /// A `boolean` column.
    B(Option<bool>),
    /// A `bigint` column.
    L(Option<i64>),
}

enum Builder {
    S(StringBuilder),
    T(TimestampMillisecondBuilder),
    F(Float64Builder),
    B(BooleanBuilder),
    L(Int64Builder),
}

impl Builder {
    fn new(kind: Kind) -> Self {
        match kind {
            Kind::String => Builder::S(StringBuilder::new()),
            Kind::Timestamp => Builder::T(TimestampMillisecondBuilder::new().with_timezone("UTC")),
            Kind::Double => Builder::F(Float64Builder::new()),
            Kind::Boolean => Builder::B(BooleanBuilder::new()),
            Kind::Long => Builder::L(Int64Builder::new()),
        }
    }

    fn finish(&mut self) -> ArrayRef {
        match self {
            Builder::S(b) => Arc::new(b.finish()),
            Builder::T(b) => Arc::new(b.finish()),
            Builder::F(b) => Arc::new(b.finish()),
            Builder::B(b) => Arc::new(b.finish()),
            Builder::L(b) => Arc::new(b.finish()),
        }
    }
}

/// A table file being written.
pub struct TableWriter {
    columns: &'static [Column],
    schema: SchemaRef,
    builders: Vec<Builder>,
    pending: usize,
    rows: u64,
    writer: ArrowWriter<Vec<u8>>,
}

impl TableWriter {
    /// A new, empty file of the table with these columns (snappy-compressed).
    pub fn new(columns: &'static [Column]) -> Result<Self, ParquetError> {
        let schema = arrow_schema(columns);
        let props = WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
            .build();
        Ok(Self {
            columns,
            builders: columns.iter().map(|c| Builder::new(c.kind)).collect(),
            writer: ArrowWriter::try_new(Vec::new(), schema.clone(), Some(props))?,
            schema,
            pending: 0,
            rows: 0,
        })
    }

    /// Appends a row: one cell per column, in column order, of the column's kind.
    ///
    /// Panics when the cells do not match the columns (a programming error).
    pub fn push(&mut self, cells: &[Cell<'_>]) -> Result<(), ParquetError> {
        assert_eq!(cells.len(), self.columns.len(), "one cell per column");
        for ((builder, cell), column) in self.builders.iter_mut().zip(cells).zip(self.columns) {
            match (builder, *cell) {
                (Builder::S(b), Cell::S(v)) => b.append_option(v),
                (Builder::T(b), Cell::T(v)) => b.append_option(v),
                (Builder::F(b), Cell::F(v)) => b.append_option(v),
                (Builder::B(b), Cell::B(v)) => b.append_option(v),
                (Builder::L(b), Cell::L(v)) => b.append_option(v),
                _ => panic!(
                    "column {} is {:?}, the cell is {cell:?}",
                    column.name, column.kind
                ),
            }
        }
        self.pending += 1;
        self.rows += 1;
        if self.pending >= BATCH_ROWS {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), ParquetError> {
        if self.pending == 0 {
            return Ok(());
        }
        let arrays = self.builders.iter_mut().map(Builder::finish).collect();
        let batch = RecordBatch::try_new(self.schema.clone(), arrays)?;
        self.pending = 0;
        self.writer.write(&batch)
    }

    /// Rows pushed so far.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Closes the file and returns its bytes.
    pub fn finish(mut self) -> Result<Vec<u8>, ParquetError> {
        self.flush()?;
        self.writer.into_inner()
    }
}
