//! Where SQLite's and PostgreSQL's SQL really differ. The shared queries are written
//! once with `?` parameters and these pieces, and rendered for a backend when its store
//! opens.

/// One backend's spelling of what the shared queries need.
#[derive(Debug, Clone, Copy)]
pub struct Dialect {
    /// Parameters are numbered (`$1, $2, ...`, PostgreSQL) instead of `?` (SQLite).
    pub numbered_params: bool,
    /// The smaller of two values: SQLite's scalar `MIN`, PostgreSQL's `LEAST`.
    pub least: &'static str,
    /// The larger of two values: SQLite's scalar `MAX`, PostgreSQL's `GREATEST`.
    pub greatest: &'static str,
    /// A list column `{c}` of `sites` (`required_namespaces`, `allowed_paths`) read as
    /// JSON array text (or NULL for none): SQLite stores that text, PostgreSQL a
    /// `text[]`.
    pub array_read: &'static str,
    /// The value stored in a list column for a JSON array text parameter `?` (NULL for
    /// none).
    pub array_write: &'static str,
    /// The condition that list column `{c}` holds at least one item (NULL in SQLite,
    /// `'{}'` in PostgreSQL when it holds none); partial indexes use the same one.
    pub array_nonempty: &'static str,
    /// The key id of sealed text `<format>.<kid>.<nonce>.<ct>` (format `v1` or `v2`) in
    /// column `{v}`: the text between the first two dots.
    pub key_id_of: &'static str,
    /// Now on the store's clock, in unix milliseconds (health leases: every replica
    /// uses the same clock).
    pub now_ms: &'static str,
    /// The next `site_health.seq`: PostgreSQL's sequence, SQLite's `MAX + 1` (one writer
    /// at a time).
    pub next_health_seq: &'static str,
    /// Added to a `SELECT` of rows about to be claimed so that concurrent claims take
    /// different rows (PostgreSQL's `FOR UPDATE SKIP LOCKED`; SQLite has one writer).
    pub skip_locked: &'static str,
}

impl Dialect {
    /// The select-list item for the list column `column`.
    pub fn array_column(&self, column: &str) -> String {
        format!("{} AS {column}", self.array_read.replace("{c}", column))
    }

    /// The condition that the list column `column` is not empty.
    pub fn array_nonempty(&self, column: &str) -> String {
        self.array_nonempty.replace("{c}", column)
    }

    /// The key id expression of sealed text in `column`.
    pub fn key_id(&self, column: &str) -> String {
        self.key_id_of.replace("{v}", column)
    }

    /// `INSERT INTO {table} VALUES ({row}), ...` with `rows` rows, rendered.
    pub fn insert_rows(&self, table: &str, row: &str, rows: usize) -> String {
        let values = vec![format!("({row})"); rows].join(", ");
        self.render(&format!("INSERT INTO {table} VALUES {values}"))
    }

    /// `?, ?, ...` with `n` parameters (for an `IN (...)` list).
    pub fn params(n: usize) -> String {
        vec!["?"; n].join(", ")
    }

    /// `sql` with its `?` parameters in this dialect's form (string literals left as
    /// they are).
    pub fn render(&self, sql: &str) -> String {
        if !self.numbered_params {
            return sql.to_string();
        }
        let mut out = String::with_capacity(sql.len() + 16);
        let (mut n, mut quoted) = (0, false);
        for c in sql.chars() {
            match c {
                '\'' => {
                    quoted = !quoted;
                    out.push(c);
                }
                '?' if !quoted => {
                    n += 1;
                    out.push('$');
                    out.push_str(&n.to_string());
                }
                _ => out.push(c),
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NUMBERED: Dialect = Dialect {
        numbered_params: true,
        least: "LEAST",
        greatest: "GREATEST",
        array_read: "array_to_json({c})::text",
        array_write: "",
        array_nonempty: "cardinality({c}) > 0",
        key_id_of: "split_part({v}, '.', 2)",
        now_ms: "CAST(EXTRACT(EPOCH FROM now()) * 1000 AS BIGINT)",
        next_health_seq: "nextval('site_health_seq')",
        skip_locked: " FOR UPDATE SKIP LOCKED",
    };

    #[test]
    fn parameters_are_numbered_outside_literals() {
        assert_eq!(
            NUMBERED.render("SELECT '?' FROM t WHERE a = ? AND b LIKE 'v1.%' LIMIT ?"),
            "SELECT '?' FROM t WHERE a = $1 AND b LIKE 'v1.%' LIMIT $2"
        );
        let plain = Dialect {
            numbered_params: false,
            ..NUMBERED
        };
        assert_eq!(plain.render("a = ? AND b = ?"), "a = ? AND b = ?");
        assert_eq!(NUMBERED.key_id("value"), "split_part(value, '.', 2)");
        assert_eq!(
            NUMBERED.array_column("allowed_paths"),
            "array_to_json(allowed_paths)::text AS allowed_paths"
        );
        assert_eq!(
            NUMBERED.array_nonempty("allowed_origins"),
            "cardinality(allowed_origins) > 0"
        );
    }
}
