//! Onboarding orgs into a deployed stack and reading job status (the `scorecards orgs …` and
//! `scorecards status` commands): an org is its secret `<prefix><org id>` in Secrets Manager
//! plus its id in the registry item of the table.

use aws_sdk_secretsmanager::Client as SecretsClient;

use crate::adapters::ledger::StoreLedger;
use crate::adapters::secrets::parse_org_secret;
use crate::domain::OrgId;
use crate::handlers::dispatch::DispatchRecord;
use crate::ports::{
    ConditionalStore, CredentialError, JobRecord, JobStatus, JobStore, PendingDay, StoreError,
};

/// A failed onboarding step.
#[derive(Debug, thiserror::Error)]
pub enum OnboardingError {
    /// The org's credentials are invalid (nothing was written).
    #[error(transparent)]
    Credentials(#[from] CredentialError),
    /// AWS failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn secrets_err(e: impl std::fmt::Display) -> StoreError {
    StoreError::new("secretsmanager", e)
}

/// Validates `secret_json` (`{"region", "client_id", "client_secret", …}`), checks that the
/// registry can be read, stores the secret as `<prefix><org id>` (creating or replacing it)
/// and registers the org.
pub async fn add_org<S: ConditionalStore>(
    secrets: &SecretsClient,
    ledger: &StoreLedger<S>,
    prefix: &str,
    org_id: &OrgId,
    secret_json: &str,
) -> Result<(), OnboardingError> {
    parse_org_secret(org_id, secret_json)?;
    // The registry is read first, so a missing or unreadable table fails before a secret is
    // written that no registered org would use.
    ledger.orgs().await?;
    let name = format!("{prefix}{org_id}");
    let created = secrets
        .create_secret()
        .name(&name)
        .secret_string(secret_json)
        .send()
        .await;
    if let Err(e) = created {
        let service = e.into_service_error();
        if !service.is_resource_exists_exception() {
            return Err(secrets_err(crate::adapters::aws_service_message(&service)).into());
        }
        secrets
            .put_secret_value()
            .secret_id(&name)
            .secret_string(secret_json)
            .send()
            .await
            .map_err(|e| secrets_err(crate::adapters::aws_message(&e)))?;
    }
    ledger.register_org(org_id).await?;
    Ok(())
}

/// Unregisters an org; with `delete_secret`, schedules its secret for deletion (Secrets
/// Manager's recovery window applies). Returns `false` when the org was not registered.
pub async fn remove_org<S: ConditionalStore>(
    secrets: &SecretsClient,
    ledger: &StoreLedger<S>,
    prefix: &str,
    org_id: &OrgId,
    delete_secret: bool,
) -> Result<bool, OnboardingError> {
    let removed = ledger.remove_org(org_id).await?;
    if delete_secret {
        let deleted = secrets
            .delete_secret()
            .secret_id(format!("{prefix}{org_id}"))
            .send()
            .await;
        if let Err(e) = deleted {
            let service = e.into_service_error();
            // Already gone or already scheduled for deletion: nothing left to do.
            if !service.is_resource_not_found_exception() && !service.is_invalid_request_exception()
            {
                return Err(secrets_err(crate::adapters::aws_service_message(&service)).into());
            }
        }
    }
    Ok(removed)
}

/// One day of a dispatch, as `scorecards status` shows it.
#[derive(Debug, Clone)]
pub struct DayStatus {
    /// The org-day.
    pub spec: crate::domain::JobSpec,
    /// Its job record: the last run of that org-day, whichever dispatch asked for it.
    pub record: Option<JobRecord>,
    /// Its entry in the org's pending set while it waits to be exported for this dispatch:
    /// then the record tells only how the previous run ended. A day that a run committed
    /// after this dispatch was made, and that a later dispatch asked for again, is done for
    /// this one (`None`).
    pub pending: Option<PendingDay>,
}

/// The days of a dispatch (`job_id` of its response), in order, each with its record and
/// its pending entry; `None` when no dispatch has that id. One read per org (its pending
/// set) and one per day.
pub async fn dispatch_status<S: ConditionalStore>(
    ledger: &StoreLedger<S>,
    job_id: &str,
) -> Result<Option<Vec<DayStatus>>, StoreError> {
    let Some(record) = ledger
        .recall::<DispatchRecord>(&format!("dispatch#{job_id}"))
        .await?
    else {
        return Ok(None);
    };
    let mut pending = std::collections::HashMap::new();
    for org_id in &record.orgs {
        for day in ledger.pending(org_id).await? {
            pending.insert((org_id.clone(), day.key()), day);
        }
    }
    let mut out = Vec::new();
    for spec in record.jobs() {
        let job = ledger.get(&spec).await?;
        let committed_since = job.as_ref().is_some_and(|r| {
            r.updated_at >= record.created_at
                && matches!(
                    r.status,
                    JobStatus::Committed { .. } | JobStatus::CommittedWithGaps { .. }
                )
        });
        let waiting = pending
            .remove(&(spec.org_id.clone(), PendingDay::key_of(&spec)))
            .filter(|p| p.request_id == job_id || !committed_since);
        out.push(DayStatus {
            pending: waiting,
            record: job,
            spec,
        });
    }
    Ok(Some(out))
}
