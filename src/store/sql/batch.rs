//! Bulk site writes ([`crate::store::Store::write_sites`]): a whole onboarding file in
//! one transaction, so it is written whole or not at all, with one commit (one fsync on
//! SQLite) for all of it.

use super::rows::SiteLists;
use super::txn::already_exists;
use super::{Backend, SqlStore};
use crate::store::{ChangeKind, SiteRecord, SiteWrite, StoreError};
use sqlx::{Database, Encode, Executor, IntoArguments, Type};

impl<B: Backend> SqlStore<B>
where
    for<'c> &'c mut <B::Db as Database>::Connection: Executor<'c, Database = B::Db>,
    for<'q> <B::Db as Database>::Arguments<'q>: IntoArguments<'q, B::Db>,
    for<'q> &'q str: Encode<'q, B::Db> + Type<B::Db>,
    for<'q> Option<&'q str>: Encode<'q, B::Db> + Type<B::Db>,
    for<'q> i64: Encode<'q, B::Db> + Type<B::Db>,
    for<'q> Option<i64>: Encode<'q, B::Db> + Type<B::Db>,
    for<'q> &'q [u8]: Encode<'q, B::Db> + Type<B::Db>,
    for<'q> bool: Encode<'q, B::Db> + Type<B::Db>,
{
    /// Every write of the batch, its audit entries and its change-log rows in one
    /// transaction; the first error rolls everything back.
    pub(super) async fn write_sites_in_one(
        &self,
        writes: &[SiteWrite],
    ) -> Result<Vec<SiteRecord>, StoreError> {
        if writes.is_empty() {
            return Ok(Vec::new());
        }
        let mut tx = self.backend.begin_write().await?;
        let now = crate::time::now_unix();
        let mut written = Vec::with_capacity(writes.len());
        for write in writes {
            match write {
                SiteWrite::Create { site, audit } => {
                    let lists = SiteLists::of(site);
                    Self::bind_site(sqlx::query(&self.sql.insert_site), site, &lists)
                        .execute(&mut *tx)
                        .await
                        .map_err(|e| already_exists::<B>(e, || format!("site {}", site.id)))?;
                    self.insert_audit(&mut tx, audit).await?;
                    written.push(site.clone());
                }
                SiteWrite::Update { site, audit } => {
                    self.update_site_row(&mut tx, site, now).await?;
                    self.insert_audit(&mut tx, audit).await?;
                    written.push(SiteRecord {
                        updated_at: now,
                        version: site.version + 1,
                        ..site.clone()
                    });
                }
            }
        }
        let ids: Vec<&str> = writes.iter().map(|w| w.site().id.as_str()).collect();
        B::record_changes(&mut tx, ChangeKind::Site, &ids).await?;
        tx.commit().await.map_err(B::unavailable)?;
        Ok(written)
    }
}
