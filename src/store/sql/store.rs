//! [`Store`] on every [`Backend`]: the same statements and the same Rust for SQLite and
//! PostgreSQL. Every write is one transaction that records its changes (through the
//! backend) and writes its audit record.

use super::queries::{site_row, Queries};
use super::queries::{ADMIN_TOKEN_COLUMNS, AUDIT_COLUMNS, KEY_COLUMNS, KEY_ROW, SITE_COLUMNS};
use super::rows::{
    records, AdminTokenRow, ChangeRow, CountsRow, SiteLists, SiteOriginsRow, SiteRow,
};
use super::txn::{already_exists, import_error};
use super::{bounded, is_foreign_key_violation, sealed_by_kinds, Backend, SqlStore};
use crate::store::{
    trace_query, AdminTokenRecord, ApiKeyRecord, AuditEntry, AuditPage, AuditRecord, ChangeEvent,
    ChangeKind, ChangesSince, ImportBatch, RecordCounts, Reseal, SchemaStatus, SealedSlot,
    SealedValue, SiteRecord, SiteWrite, Store, StoreError,
};
use async_trait::async_trait;
use sqlx::{ColumnIndex, Database, Decode, Encode, Executor, IntoArguments, Type};
use tokio::sync::mpsc::UnboundedSender;

/// What the shared code asks of a database driver. sqlx states a driver's abilities as
/// bounds on other types (`i64: Encode<DB>`), which Rust does not carry from one impl
/// to the next: they are listed here, and the helpers (`commit`, `bind_*`) name the few
/// they need.
#[async_trait]
impl<B: Backend> Store for SqlStore<B>
where
    for<'c> &'c mut <B::Db as Database>::Connection: Executor<'c, Database = B::Db>,
    for<'q> <B::Db as Database>::Arguments<'q>: IntoArguments<'q, B::Db>,
    for<'q> &'q str: Encode<'q, B::Db> + Type<B::Db>,
    for<'q> Option<&'q str>: Encode<'q, B::Db> + Type<B::Db>,
    for<'q> &'q [u8]: Encode<'q, B::Db> + Type<B::Db>,
    for<'q> i64: Encode<'q, B::Db> + Type<B::Db>,
    for<'q> Option<i64>: Encode<'q, B::Db> + Type<B::Db>,
    for<'q> bool: Encode<'q, B::Db> + Type<B::Db>,
    for<'r> String: Decode<'r, B::Db> + Type<B::Db>,
    for<'r> Vec<u8>: Decode<'r, B::Db> + Type<B::Db>,
    for<'r> i64: Decode<'r, B::Db>,
    for<'r> bool: Decode<'r, B::Db>,
    for<'r> &'r str: ColumnIndex<<B::Db as Database>::Row>,
    usize: ColumnIndex<<B::Db as Database>::Row>,
{
    async fn ping(&self) -> Result<(), StoreError> {
        self.call(async move {
            sqlx::query(&self.sql.ping)
                .execute(self.backend.pool())
                .await
                .map_err(B::unavailable)?;
            Ok(())
        })
        .await
    }

    async fn schema(&self) -> Result<SchemaStatus, StoreError> {
        self.call(super::schema::status::<B>(self.backend.pool()))
            .await
    }

    async fn get_site(&self, id: &str) -> Result<Option<SiteRecord>, StoreError> {
        self.call(async move {
            trace_query("get_site", id);
            let row: Option<SiteRow> = sqlx::query_as(&self.sql.site)
                .bind(id)
                .fetch_optional(self.backend.pool())
                .await
                .map_err(B::unavailable)?;
            row.map(SiteRecord::try_from).transpose()
        })
        .await
    }

    async fn find_sites(
        &self,
        after: Option<&str>,
        limit: u32,
        filter: &crate::store::SiteFilter,
    ) -> Result<Vec<SiteRecord>, StoreError> {
        let (text, pattern) = filter.text_pattern();
        let state = filter.state.clone().unwrap_or_default();
        self.call(async move {
            trace_query("find_sites", after.unwrap_or(""));
            let rows: Vec<SiteRow> = sqlx::query_as(&self.sql.sites_matching)
                .bind(after.unwrap_or(""))
                .bind(text.as_str())
                .bind(pattern.as_str())
                .bind(pattern.as_str())
                .bind(state.as_str())
                .bind(state.as_str())
                .bind(i64::from(limit))
                .fetch_all(self.backend.pool())
                .await
                .map_err(B::unavailable)?;
            records(rows)
        })
        .await
    }

    async fn list_sites(
        &self,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<SiteRecord>, StoreError> {
        self.find_sites(after, limit, &crate::store::SiteFilter::default())
            .await
    }

    async fn site_origins(&self) -> Result<Vec<(String, Vec<String>)>, StoreError> {
        self.call(async move {
            trace_query("site_origins", "");
            let rows: Vec<SiteOriginsRow> = sqlx::query_as(&self.sql.site_origins)
                .fetch_all(self.backend.pool())
                .await
                .map_err(B::unavailable)?;
            records(rows)
        })
        .await
    }

    async fn create_site(&self, site: &SiteRecord, audit: &AuditEntry) -> Result<(), StoreError> {
        self.call(async move {
            let mut tx = self.backend.begin_write().await?;
            let lists = SiteLists::of(site);
            Self::bind_site(sqlx::query(&self.sql.insert_site), site, &lists)
                .execute(&mut *tx)
                .await
                .map_err(|e| already_exists::<B>(e, || format!("site {}", site.id)))?;
            B::record_changes(&mut tx, ChangeKind::Site, &[&site.id]).await?;
            self.commit(tx, audit).await
        })
        .await
    }

    async fn update_site(
        &self,
        site: &SiteRecord,
        audit: &AuditEntry,
    ) -> Result<SiteRecord, StoreError> {
        self.call(async move {
            let mut tx = self.backend.begin_write().await?;
            let now = crate::time::now_unix();
            self.update_site_row(&mut tx, site, now).await?;
            B::record_changes(&mut tx, ChangeKind::Site, &[&site.id]).await?;
            // A changed site is checked again at once, by whichever process claims it
            // first; a check of the old site still running is not written.
            sqlx::query(&self.health.due_now)
                .bind(site.id.as_str())
                .execute(&mut *tx)
                .await
                .map_err(B::unavailable)?;
            self.commit(tx, audit).await?;
            Ok(SiteRecord {
                updated_at: now,
                version: site.version + 1,
                ..site.clone()
            })
        })
        .await
    }

    async fn write_sites(&self, writes: &[SiteWrite]) -> Result<Vec<SiteRecord>, StoreError> {
        bounded::<B, _>(B::IMPORT_TIMEOUT, self.write_sites_in_one(writes)).await
    }

    async fn delete_site(&self, id: &str, audit: &AuditEntry) -> Result<(), StoreError> {
        self.call(async move {
            let mut tx = self.backend.begin_write().await?;
            let keys: Vec<String> = sqlx::query_scalar(&self.sql.site_key_ids)
                .bind(id)
                .fetch_all(&mut *tx)
                .await
                .map_err(B::unavailable)?;
            let done = sqlx::query(&self.sql.delete_site)
                .bind(id)
                .execute(&mut *tx)
                .await
                .map_err(B::unavailable)?;
            if B::rows_affected(&done) == 0 {
                return Err(StoreError::NotFound(format!("site {id}")));
            }
            let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
            B::record_changes(&mut tx, ChangeKind::ApiKey, &keys).await?;
            B::record_changes(&mut tx, ChangeKind::Site, &[id]).await?;
            self.commit(tx, audit).await
        })
        .await
    }

    async fn get_api_key(&self, key_id: &str) -> Result<Option<ApiKeyRecord>, StoreError> {
        self.call(async move {
            trace_query("get_api_key", key_id);
            sqlx::query_as(&self.sql.key)
                .bind(key_id)
                .fetch_optional(self.backend.pool())
                .await
                .map_err(B::unavailable)
        })
        .await
    }

    async fn list_api_keys(&self, site_id: &str) -> Result<Vec<ApiKeyRecord>, StoreError> {
        self.call(async move {
            trace_query("list_api_keys", site_id);
            sqlx::query_as(&self.sql.site_keys)
                .bind(site_id)
                .fetch_all(self.backend.pool())
                .await
                .map_err(B::unavailable)
        })
        .await
    }

    async fn insert_api_key(
        &self,
        key: &ApiKeyRecord,
        audit: &AuditEntry,
    ) -> Result<(), StoreError> {
        self.call(async move {
            let mut tx = self.backend.begin_write().await?;
            Self::bind_key(sqlx::query(&self.sql.insert_key), key)
                .execute(&mut *tx)
                .await
                .map_err(|e| match e {
                    e if is_foreign_key_violation(&e) => {
                        StoreError::NotFound(format!("site {}", key.site_id))
                    }
                    e => already_exists::<B>(e, || format!("key {}", key.key_id)),
                })?;
            B::record_changes(&mut tx, ChangeKind::ApiKey, &[&key.key_id]).await?;
            self.commit(tx, audit).await
        })
        .await
    }

    async fn revoke_api_key(
        &self,
        key_id: &str,
        revoked_at: i64,
        grace_until: i64,
        audit: &AuditEntry,
    ) -> Result<ApiKeyRecord, StoreError> {
        self.call(async move {
            let mut tx = self.backend.begin_write().await?;
            let key: Option<ApiKeyRecord> = sqlx::query_as(&self.sql.revoke_key)
                .bind(revoked_at)
                .bind(grace_until)
                .bind(grace_until)
                .bind(key_id)
                .fetch_optional(&mut *tx)
                .await
                .map_err(B::unavailable)?;
            let Some(key) = key else {
                return Err(StoreError::NotFound(format!("key {key_id}")));
            };
            B::record_changes(&mut tx, ChangeKind::ApiKey, &[key_id]).await?;
            self.commit(tx, audit).await?;
            Ok(key)
        })
        .await
    }

    async fn rotate_api_key(
        &self,
        old_key_id: &str,
        revoked_at: i64,
        grace_until: i64,
        new: &ApiKeyRecord,
        audit: &AuditEntry,
    ) -> Result<ApiKeyRecord, StoreError> {
        self.call(async move {
            let mut tx = self.backend.begin_write().await?;
            Self::bind_key(sqlx::query(&self.sql.insert_key), new)
                .execute(&mut *tx)
                .await
                .map_err(|e| match e {
                    e if is_foreign_key_violation(&e) => {
                        StoreError::NotFound(format!("site {}", new.site_id))
                    }
                    e => already_exists::<B>(e, || format!("key {}", new.key_id)),
                })?;
            let old: Option<ApiKeyRecord> = sqlx::query_as(&self.sql.revoke_key)
                .bind(revoked_at)
                .bind(grace_until)
                .bind(grace_until)
                .bind(old_key_id)
                .fetch_optional(&mut *tx)
                .await
                .map_err(B::unavailable)?;
            // Dropping the transaction rolls the new key back.
            let Some(old) = old else {
                return Err(StoreError::NotFound(format!("key {old_key_id}")));
            };
            B::record_changes(&mut tx, ChangeKind::ApiKey, &[old_key_id, &new.key_id]).await?;
            self.commit(tx, audit).await?;
            Ok(old)
        })
        .await
    }

    async fn record_key_use(&self, key_ids: &[String], at: i64) -> Result<u64, StoreError> {
        self.call(async move {
            let mut updated = 0;
            // One statement per thousand keys, each idempotent: no transaction needed.
            for chunk in key_ids.chunks(1000) {
                let sql = Queries::key_use(&B::DIALECT, chunk.len());
                let mut q = sqlx::query(&sql).bind(at);
                for id in chunk {
                    q = q.bind(id.as_str());
                }
                let done = q
                    .execute(self.backend.pool())
                    .await
                    .map_err(B::unavailable)?;
                updated += B::rows_affected(&done);
            }
            Ok(updated)
        })
        .await
    }

    async fn purge_api_keys(
        &self,
        before: i64,
        limit: u32,
        audit: &(dyn for<'k> Fn(&'k ApiKeyRecord) -> AuditEntry + Sync),
    ) -> Result<Vec<ApiKeyRecord>, StoreError> {
        self.call(async move {
            let mut tx = self.backend.begin_write().await?;
            let purged: Vec<ApiKeyRecord> = sqlx::query_as(&self.sql.purge_keys)
                .bind(before)
                .bind(before)
                .bind(i64::from(limit))
                .fetch_all(&mut *tx)
                .await
                .map_err(B::unavailable)?;
            if purged.is_empty() {
                return Ok(purged);
            }
            let ids: Vec<&str> = purged.iter().map(|k| k.key_id.as_str()).collect();
            B::record_changes(&mut tx, ChangeKind::ApiKey, &ids).await?;
            for key in &purged {
                self.insert_audit(&mut tx, &audit(key)).await?;
            }
            tx.commit().await.map_err(B::unavailable)?;
            Ok(purged)
        })
        .await
    }

    async fn sites_with_upstream(
        &self,
        urls: &[&str],
        limit: u32,
    ) -> Result<Vec<String>, StoreError> {
        if urls.is_empty() {
            return Ok(Vec::new());
        }
        self.call(async move {
            let sql = Queries::sites_with_upstream(&B::DIALECT, urls.len());
            let mut q = sqlx::query_scalar(&sql);
            for url in urls {
                q = q.bind(*url);
            }
            q.bind(i64::from(limit))
                .fetch_all(self.backend.pool())
                .await
                .map_err(B::unavailable)
        })
        .await
    }

    async fn append_audit(&self, audit: &AuditEntry) -> Result<(), StoreError> {
        self.call(async move {
            let tx = self.backend.begin_write().await?;
            self.commit(tx, audit).await
        })
        .await
    }

    async fn audit_page(&self, page: &AuditPage<'_>) -> Result<Vec<AuditRecord>, StoreError> {
        self.call(async move {
            sqlx::query_as(&self.sql.audit_newest)
                .bind(page.site_id)
                .bind(page.site_id)
                .bind(page.since.unwrap_or(i64::MIN))
                .bind(page.before.unwrap_or(i64::MAX))
                .bind(i64::from(page.limit))
                .fetch_all(self.backend.pool())
                .await
                .map_err(B::unavailable)
        })
        .await
    }

    async fn create_admin_token(
        &self,
        token: &AdminTokenRecord,
        audit: &AuditEntry,
    ) -> Result<(), StoreError> {
        self.call(async move {
            let mut tx = self.backend.begin_write().await?;
            Self::bind_token(sqlx::query(&self.sql.insert_token), token)
                .execute(&mut *tx)
                .await
                .map_err(|e| already_exists::<B>(e, || format!("admin token {}", token.id)))?;
            B::record_changes(&mut tx, ChangeKind::AdminToken, &[&token.id]).await?;
            self.commit(tx, audit).await
        })
        .await
    }

    async fn get_admin_token(&self, id: &str) -> Result<Option<AdminTokenRecord>, StoreError> {
        self.call(async move {
            trace_query("get_admin_token", id);
            let row: Option<AdminTokenRow> = sqlx::query_as(&self.sql.token)
                .bind(id)
                .fetch_optional(self.backend.pool())
                .await
                .map_err(B::unavailable)?;
            row.map(AdminTokenRecord::try_from).transpose()
        })
        .await
    }

    async fn list_admin_tokens(&self) -> Result<Vec<AdminTokenRecord>, StoreError> {
        self.call(async move {
            let rows: Vec<AdminTokenRow> = sqlx::query_as(&self.sql.tokens)
                .fetch_all(self.backend.pool())
                .await
                .map_err(B::unavailable)?;
            records(rows)
        })
        .await
    }

    async fn revoke_admin_token(
        &self,
        id: &str,
        at: i64,
        audit: &AuditEntry,
    ) -> Result<AdminTokenRecord, StoreError> {
        self.call(async move {
            let mut tx = self.backend.begin_write().await?;
            let row: Option<AdminTokenRow> = sqlx::query_as(&self.sql.revoke_token)
                .bind(at)
                .bind(at)
                .bind(id)
                .fetch_optional(&mut *tx)
                .await
                .map_err(B::unavailable)?;
            let Some(row) = row else {
                return Err(StoreError::NotFound(format!("admin token {id}")));
            };
            let token = AdminTokenRecord::try_from(row)?;
            B::record_changes(&mut tx, ChangeKind::AdminToken, &[id]).await?;
            self.commit(tx, audit).await?;
            Ok(token)
        })
        .await
    }

    async fn touch_admin_token(&self, id: &str, at: i64) -> Result<(), StoreError> {
        self.call(async move {
            sqlx::query(&self.sql.touch_token)
                .bind(at)
                .bind(id)
                .execute(self.backend.pool())
                .await
                .map_err(B::unavailable)?;
            Ok(())
        })
        .await
    }

    async fn get_setting(&self, name: &str) -> Result<Option<String>, StoreError> {
        self.call(async move {
            trace_query("get_setting", name);
            sqlx::query_scalar(&self.sql.setting)
                .bind(name)
                .fetch_optional(self.backend.pool())
                .await
                .map_err(B::unavailable)
        })
        .await
    }

    async fn insert_setting_if_absent(
        &self,
        name: &str,
        value: &str,
    ) -> Result<String, StoreError> {
        self.call(async move {
            let mut tx = self.backend.begin_write().await?;
            let inserted = sqlx::query(&self.sql.insert_setting_if_absent)
                .bind(name)
                .bind(value)
                .execute(&mut *tx)
                .await
                .map_err(B::unavailable)?;
            if B::rows_affected(&inserted) > 0 {
                B::record_changes(&mut tx, ChangeKind::Setting, &[name]).await?;
            }
            let stored: String = sqlx::query_scalar(&self.sql.setting)
                .bind(name)
                .fetch_one(&mut *tx)
                .await
                .map_err(B::unavailable)?;
            tx.commit().await.map_err(B::unavailable)?;
            Ok(stored)
        })
        .await
    }

    async fn latest_change(&self) -> Result<i64, StoreError> {
        self.call(async move {
            sqlx::query_scalar(&self.sql.latest_change)
                .fetch_one(self.backend.pool())
                .await
                .map_err(B::unavailable)
        })
        .await
    }

    async fn changes_since(&self, seq: i64, limit: u32) -> Result<ChangesSince, StoreError> {
        self.call(async move {
            let rows: Vec<ChangeRow> = sqlx::query_as(&self.sql.changes_after)
                .bind(seq)
                .bind(i64::from(limit))
                .fetch_all(self.backend.pool())
                .await
                .map_err(B::unavailable)?;
            // Pruned past `seq`: the oldest kept row is not the next one after it.
            let oldest = rows.first().and_then(|r| r.oldest);
            let complete = oldest.is_none_or(|oldest| oldest <= seq + 1);
            Ok(ChangesSince {
                changes: records(rows)?,
                complete,
            })
        })
        .await
    }

    async fn prune_changes(&self, before: i64) -> Result<u64, StoreError> {
        self.call(async move {
            let done = sqlx::query(&self.sql.prune_changes)
                .bind(before)
                .execute(self.backend.pool())
                .await
                .map_err(B::unavailable)?;
            Ok(B::rows_affected(&done))
        })
        .await
    }

    fn spawn_listener(&self, events: UnboundedSender<ChangeEvent>) -> bool {
        self.backend.spawn_listener(events)
    }

    async fn sealed_key_counts(&self) -> Result<Vec<(String, i64)>, StoreError> {
        self.call(async move {
            sqlx::query_as(&self.sql.sealed_counts)
                .fetch_all(self.backend.pool())
                .await
                .map_err(B::unavailable)
        })
        .await
    }

    async fn sealed_not_by(
        &self,
        key_id: &str,
        after: Option<&SealedSlot>,
        limit: u32,
    ) -> Result<Vec<SealedValue>, StoreError> {
        self.call(sealed_by_kinds(
            after,
            limit,
            |kind, after_id, want| async move {
                sqlx::query_as(self.sql.sealed_of_kind(kind))
                    .bind(after_id.as_str())
                    .bind(key_id)
                    .bind(want)
                    .fetch_all(self.backend.pool())
                    .await
                    .map_err(B::unavailable)
            },
        ))
        .await
    }

    async fn reseal(&self, batch: &[Reseal], audit: &AuditEntry) -> Result<u64, StoreError> {
        self.call(async move {
            let mut tx = self.backend.begin_write().await?;
            let mut replaced = 0;
            for r in batch {
                let (kind, id) = r.old.slot.change();
                let done = sqlx::query(self.sql.reseal(&r.old.slot))
                    .bind(r.new_sealed.as_str())
                    .bind(id)
                    .bind(r.old.sealed.as_str())
                    .execute(&mut *tx)
                    .await
                    .map_err(B::unavailable)?;
                if B::rows_affected(&done) > 0 {
                    replaced += B::rows_affected(&done);
                    B::record_changes(&mut tx, kind, &[id]).await?;
                }
            }
            self.commit(tx, audit).await?;
            Ok(replaced)
        })
        .await
    }

    async fn unbound_credentials(
        &self,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<SealedValue>, StoreError> {
        self.call(async move {
            let rows: Vec<(String, String, Option<String>)> =
                sqlx::query_as(&self.sql.unbound_credentials)
                    .bind(after.unwrap_or(""))
                    .bind(i64::from(limit))
                    .fetch_all(self.backend.pool())
                    .await
                    .map_err(B::unavailable)?;
            Ok(rows
                .into_iter()
                .map(|(id, sealed, upstream_url)| SealedValue {
                    slot: SealedSlot::SiteCredential(id),
                    sealed,
                    upstream_url,
                })
                .collect())
        })
        .await
    }

    async fn bind_credentials(&self, batch: &[(Reseal, AuditEntry)]) -> Result<u64, StoreError> {
        self.call(async move {
            let mut tx = self.backend.begin_write().await?;
            let mut replaced = 0;
            for (r, audit) in batch {
                let SealedSlot::SiteCredential(id) = &r.old.slot else {
                    continue;
                };
                let done = sqlx::query(&self.sql.bind_credential)
                    .bind(r.new_sealed.as_str())
                    .bind(id.as_str())
                    .bind(r.old.sealed.as_str())
                    .bind(r.old.upstream_url.as_deref().unwrap_or_default())
                    .execute(&mut *tx)
                    .await
                    .map_err(B::unavailable)?;
                if B::rows_affected(&done) > 0 {
                    replaced += B::rows_affected(&done);
                    self.insert_audit(&mut tx, audit).await?;
                }
            }
            tx.commit().await.map_err(B::unavailable)?;
            Ok(replaced)
        })
        .await
    }

    async fn record_counts(&self) -> Result<RecordCounts, StoreError> {
        self.call(async move {
            let row: CountsRow = sqlx::query_as(&self.sql.record_counts)
                .fetch_one(self.backend.pool())
                .await
                .map_err(B::unavailable)?;
            Ok(row.into())
        })
        .await
    }

    async fn export_api_keys(
        &self,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<ApiKeyRecord>, StoreError> {
        self.call(async move {
            sqlx::query_as(&self.sql.keys_after)
                .bind(after.unwrap_or(""))
                .bind(i64::from(limit))
                .fetch_all(self.backend.pool())
                .await
                .map_err(B::unavailable)
        })
        .await
    }

    async fn export_settings(&self) -> Result<Vec<(String, String)>, StoreError> {
        self.call(async move {
            sqlx::query_as(&self.sql.settings)
                .fetch_all(self.backend.pool())
                .await
                .map_err(B::unavailable)
        })
        .await
    }

    async fn export_audit(&self, after: i64, limit: u32) -> Result<Vec<AuditRecord>, StoreError> {
        self.call(async move {
            sqlx::query_as(&self.sql.audit_after)
                .bind(after)
                .bind(i64::from(limit))
                .fetch_all(self.backend.pool())
                .await
                .map_err(B::unavailable)
        })
        .await
    }

    async fn import(&self, batch: &ImportBatch) -> Result<(), StoreError> {
        bounded::<B, _>(B::IMPORT_TIMEOUT, async move {
            let mut tx = self.backend.begin_write().await?;
            // Multi-row INSERTs, each under SQLite's limit of 32766 bound parameters.
            let d = &B::DIALECT;
            for chunk in batch.settings.chunks(1000) {
                let sql = d.insert_rows("settings (name, value)", "?, ?", chunk.len());
                let mut q = sqlx::query(&sql);
                for (name, value) in chunk {
                    q = q.bind(name.as_str()).bind(value.as_str());
                }
                q.execute(&mut *tx).await.map_err(import_error::<B>)?;
            }
            for chunk in batch.admin_tokens.chunks(1000) {
                let table = format!("admin_tokens ({ADMIN_TOKEN_COLUMNS})");
                let sql = d.insert_rows(&table, "?, ?, ?, ?, ?, ?, ?", chunk.len());
                let mut q = sqlx::query(&sql);
                for t in chunk {
                    q = Self::bind_token(q, t);
                }
                q.execute(&mut *tx).await.map_err(import_error::<B>)?;
            }
            for chunk in batch.sites.chunks(1000) {
                let lists: Vec<SiteLists> = chunk.iter().map(SiteLists::of).collect();
                let table = format!("sites ({SITE_COLUMNS})");
                let sql = d.insert_rows(&table, &site_row(d), chunk.len());
                let mut q = sqlx::query(&sql);
                for (site, lists) in chunk.iter().zip(&lists) {
                    q = Self::bind_site(q, site, lists);
                }
                q.execute(&mut *tx).await.map_err(import_error::<B>)?;
            }
            for chunk in batch.api_keys.chunks(2000) {
                let table = format!("api_keys ({KEY_COLUMNS})");
                let sql = d.insert_rows(&table, KEY_ROW, chunk.len());
                let mut q = sqlx::query(&sql);
                for k in chunk {
                    q = Self::bind_key(q, k);
                }
                q.execute(&mut *tx).await.map_err(import_error::<B>)?;
            }
            for chunk in batch.audit.chunks(2000) {
                let table = format!("audit_log ({AUDIT_COLUMNS})");
                let sql = d.insert_rows(&table, "?, ?, ?, ?, ?, ?, ?, ?", chunk.len());
                let mut q = sqlx::query(&sql);
                for r in chunk {
                    q = q
                        .bind(r.id)
                        .bind(r.at)
                        .bind(r.entry.actor.as_str())
                        .bind(r.entry.action.as_str())
                        .bind(r.entry.target.as_str())
                        .bind(r.entry.site_id.as_deref())
                        .bind(r.entry.request_id.as_deref())
                        .bind(r.entry.detail.as_deref());
                }
                q.execute(&mut *tx).await.map_err(import_error::<B>)?;
            }
            if !batch.audit.is_empty() {
                B::audit_imported(&mut tx).await?;
            }
            tx.commit().await.map_err(B::unavailable)
        })
        .await
    }
}
