//! Fencing and job identity (DESIGN §6 step 5, §7): a holder whose lease was taken over
//! can change no committed byte, and jobs of one org-day with another date field or source
//! never share a commit point.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use genesys_sim::{Scenario, SourceFilter};
use scorecards_shared::adapters::local_dir::LocalDirSink;
use scorecards_shared::domain::{DateField, JobSpec, Source};
use scorecards_shared::engine::{ExportError, ExportOutcome, NoProgress};
use scorecards_shared::output::read_committed;
use scorecards_shared::ports::{
    ExportSink, JobStoreError, Manifest, PartInfo, Partition, StoreError,
};
use scorecards_shared::runner::{Ports, org_exporter, run_org};
use tokio::sync::Notify;

use crate::harness::{Harness, assert_same, settings};

/// Where a paused holder stops.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Point {
    /// Just before its first part is stored.
    BeforePart,
    /// Just after its first part is stored (before its checkpoint is saved).
    AfterPart,
    /// Just before its manifest is written.
    BeforeManifest,
}

/// A sink that stops once at `point` until resumed.
struct PausingSink {
    inner: Arc<LocalDirSink>,
    point: Point,
    armed: std::sync::atomic::AtomicBool,
    reached: Notify,
    resume: Notify,
}

impl PausingSink {
    fn new(inner: Arc<LocalDirSink>, point: Point) -> Self {
        Self {
            inner,
            point,
            armed: true.into(),
            reached: Notify::new(),
            resume: Notify::new(),
        }
    }

    async fn maybe_pause(&self, here: Point) {
        if here == self.point && self.armed.swap(false, std::sync::atomic::Ordering::SeqCst) {
            self.reached.notify_one();
            self.resume.notified().await;
        }
    }
}

#[async_trait]
impl ExportSink for PausingSink {
    async fn put(&self, key: &str, bytes: Vec<u8>) -> Result<(), StoreError> {
        let part = key.contains("/part-");
        if part {
            self.maybe_pause(Point::BeforePart).await;
        }
        self.inner.put(key, bytes).await?;
        if part {
            self.maybe_pause(Point::AfterPart).await;
        }
        Ok(())
    }
    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.inner.delete(key).await
    }
    async fn exists(&self, key: &str) -> Result<bool, StoreError> {
        self.inner.exists(key).await
    }
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.get(key).await
    }
    async fn list(&self, dir: &str) -> Result<Vec<String>, StoreError> {
        self.inner.list(dir).await
    }
    async fn verify(&self, part: &PartInfo) -> Result<bool, StoreError> {
        self.inner.verify(part).await
    }
    async fn manifest_version(&self, partition: &Partition) -> Result<Option<String>, StoreError> {
        self.inner.manifest_version(partition).await
    }
    async fn commit(
        &self,
        manifest: &Manifest,
        expected: Option<&str>,
    ) -> Result<bool, StoreError> {
        self.maybe_pause(Point::BeforeManifest).await;
        self.inner.commit(manifest, expected).await
    }
}

/// Every file below `root`, path → bytes.
fn snapshot(root: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    fn walk(dir: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else {
                out.insert(path.clone(), std::fs::read(&path).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, &mut out);
    out
}

/// The committed bytes of a partition: its manifest and the parts it lists.
fn committed_bytes(
    files: &BTreeMap<PathBuf, Vec<u8>>,
    root: &Path,
    manifest: &Manifest,
) -> Vec<Vec<u8>> {
    let mut keys = vec![manifest.partition().manifest_key()];
    keys.extend(manifest.parts.iter().map(|p| p.key.clone()));
    keys.iter()
        .map(|k| files.get(&root.join(k)).cloned().expect("committed file"))
        .collect()
}

async fn stale_holder_changes_nothing(point: Point) {
    let h = Harness::start(Scenario::test()).await;
    let org = h.org(0);
    let job = h.jobs(&org)[1].clone();
    let mut s = settings();
    s.engine.lease = Duration::from_secs(60);
    let pausing = Arc::new(PausingSink::new(h.sink.clone(), point));
    let stale_ports = Ports {
        sink: pausing.clone(),
        ..h.ports.clone()
    };
    let stale = org_exporter(&org, &s, &stale_ports, "stale").unwrap();
    let stale_job = job.clone();
    let stale_run = tokio::spawn(async move { stale.exporter.run(&stale_job, &NoProgress).await });
    pausing.reached.notified().await;

    // The stale holder's lease runs out; another holder takes the job over and commits.
    h.clock.advance(Duration::from_secs(61));
    let fresh = org_exporter(&org, &s, &h.ports, "fresh").unwrap();
    let report = fresh.exporter.run(&job, &NoProgress).await.unwrap();
    let ExportOutcome::Committed(manifest) = report.outcome else {
        panic!("{:?}", report.outcome)
    };
    let root = h.sink.root().to_owned();
    let before = committed_bytes(&snapshot(&root), &root, &manifest);

    pausing.resume.notify_one();
    let stale_result = stale_run.await.unwrap();
    assert!(
        matches!(
            stale_result,
            Err(ExportError::Jobs(JobStoreError::LeaseLost { .. }) | ExportError::CommitConflict)
        ),
        "the stale holder must fail: {stale_result:?}"
    );
    let after = committed_bytes(&snapshot(&root), &root, &manifest);
    assert!(before == after, "no committed byte changed");
    let committed = read_committed(h.sink.as_ref() as &dyn ExportSink, &job.partition())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        committed.manifest, *manifest,
        "the manifest is the fresh holder's"
    );
    let exported: BTreeMap<String, String> = committed
        .evaluations
        .into_iter()
        .map(|e| (e.id, e.evaluation))
        .collect();
    assert_same(&exported, &truth(&h, &job, DateField::SubmittedDate));
}

fn truth(h: &Harness, job: &JobSpec, field: DateField) -> BTreeMap<String, String> {
    let field = match field {
        DateField::SubmittedDate => genesys_sim::DateField::SubmittedDate,
        DateField::ReleaseDate => genesys_sim::DateField::ReleaseDate,
        DateField::CreatedDate => genesys_sim::DateField::CreatedDate,
        DateField::ConversationDate => genesys_sim::DateField::ConversationDate,
    };
    let source = match job.source {
        Source::Human => SourceFilter::Human,
        Source::Auto => SourceFilter::Auto,
        Source::Both => SourceFilter::Both,
    };
    h.sim
        .ground_truth(
            job.org_id.as_str(),
            job.window.from,
            job.window.to,
            field,
            source,
        )
        .into_iter()
        .map(|t| (t.id, t.json))
        .collect()
}

#[tokio::test]
async fn a_stale_holder_paused_before_its_part_changes_no_committed_byte() {
    stale_holder_changes_nothing(Point::BeforePart).await;
}

#[tokio::test]
async fn a_stale_holder_paused_after_its_part_changes_no_committed_byte() {
    stale_holder_changes_nothing(Point::AfterPart).await;
}

#[tokio::test]
async fn a_stale_holder_paused_before_its_manifest_changes_no_committed_byte() {
    stale_holder_changes_nothing(Point::BeforeManifest).await;
}

/// Exports one day of one org with each (date field, source), at once or one after
/// another, and checks each against its own truth.
async fn each_job_exact(variants: &[(DateField, Source)], at_once: bool) {
    let h = Harness::start(Scenario::test()).await;
    let org = h.org(0);
    let day = h.jobs(&org)[1].clone();
    let jobs: Vec<JobSpec> = variants
        .iter()
        .map(|&(date_field, source)| JobSpec {
            date_field,
            source,
            ..day.clone()
        })
        .collect();
    if at_once {
        let exporters: Vec<_> = (0..jobs.len())
            .map(|i| org_exporter(&org, &settings(), &h.ports, &format!("x{i}")).unwrap())
            .collect();
        let runs = exporters
            .iter()
            .zip(&jobs)
            .map(|(e, j)| e.exporter.run(j, &NoProgress));
        for report in futures::future::join_all(runs).await {
            assert!(matches!(
                report.unwrap().outcome,
                ExportOutcome::Committed(_)
            ));
        }
    } else {
        for (i, job) in jobs.iter().enumerate() {
            let e = org_exporter(&org, &settings(), &h.ports, &format!("x{i}")).unwrap();
            let summary = run_org(&e, std::slice::from_ref(job), &NoProgress).await;
            assert_eq!(summary.committed, 1, "{job:?}: {:?}", summary.status);
        }
    }
    for job in &jobs {
        let committed = read_committed(h.sink.as_ref() as &dyn ExportSink, &job.partition())
            .await
            .unwrap()
            .expect("committed");
        assert_eq!(
            (committed.manifest.date_field, committed.manifest.source),
            (job.date_field, job.source)
        );
        let exported: BTreeMap<String, String> = committed
            .evaluations
            .into_iter()
            .map(|e| (e.id, e.evaluation))
            .collect();
        assert_same(&exported, &truth(&h, job, job.date_field));
    }
}

#[tokio::test]
async fn submitted_then_release_date_of_one_day_are_both_committed_and_exact() {
    let variants = [
        (DateField::SubmittedDate, Source::Both),
        (DateField::ReleaseDate, Source::Both),
    ];
    each_job_exact(&variants, false).await;
}

#[tokio::test]
async fn release_then_submitted_date_of_one_day_are_both_committed_and_exact() {
    let variants = [
        (DateField::ReleaseDate, Source::Both),
        (DateField::SubmittedDate, Source::Both),
    ];
    each_job_exact(&variants, false).await;
}

#[tokio::test]
async fn every_date_field_and_source_of_one_day_at_once_are_exact() {
    let mut variants = Vec::new();
    for field in [
        DateField::SubmittedDate,
        DateField::ReleaseDate,
        DateField::CreatedDate,
        DateField::ConversationDate,
    ] {
        for source in [Source::Human, Source::Auto, Source::Both] {
            variants.push((field, source));
        }
    }
    each_job_exact(&variants, true).await;
}

#[tokio::test]
async fn both_sources_after_a_committed_human_day_are_exported_not_up_to_date() {
    let variants = [
        (DateField::SubmittedDate, Source::Human),
        (DateField::SubmittedDate, Source::Both),
    ];
    each_job_exact(&variants, false).await;
}

/// A sink whose commit takes effect but whose answer is lost (a stop right after the
/// manifest is written, before the job record says so).
struct AnswerLostOnCommit(Arc<LocalDirSink>);

#[async_trait]
impl ExportSink for AnswerLostOnCommit {
    async fn put(&self, key: &str, bytes: Vec<u8>) -> Result<(), StoreError> {
        self.0.put(key, bytes).await
    }
    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.0.delete(key).await
    }
    async fn exists(&self, key: &str) -> Result<bool, StoreError> {
        self.0.exists(key).await
    }
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.0.get(key).await
    }
    async fn list(&self, dir: &str) -> Result<Vec<String>, StoreError> {
        self.0.list(dir).await
    }
    async fn verify(&self, part: &PartInfo) -> Result<bool, StoreError> {
        self.0.verify(part).await
    }
    async fn manifest_version(&self, partition: &Partition) -> Result<Option<String>, StoreError> {
        self.0.manifest_version(partition).await
    }
    async fn commit(
        &self,
        manifest: &Manifest,
        expected: Option<&str>,
    ) -> Result<bool, StoreError> {
        self.0.commit(manifest, expected).await?;
        Err(StoreError::new("test", "the answer was lost"))
    }
}

#[tokio::test]
async fn a_run_stopped_between_its_manifest_and_its_job_record_is_found_committed() {
    let h = Harness::start(Scenario::test()).await;
    let org = h.org(0);
    let job = h.jobs(&org)[1].clone();
    let lost = Ports {
        sink: Arc::new(AnswerLostOnCommit(h.sink.clone())),
        ..h.ports.clone()
    };
    let first = org_exporter(&org, &settings(), &lost, "first").unwrap();
    assert!(first.exporter.run(&job, &NoProgress).await.is_err());
    let manifest = h.sink.manifest(&job.partition()).await.unwrap().unwrap();
    let root = h.sink.root().to_owned();
    let before = snapshot(&root);

    let again = org_exporter(&org, &settings(), &h.ports, "again").unwrap();
    let report = again.exporter.run(&job, &NoProgress).await.unwrap();
    assert!(
        matches!(&report.outcome, ExportOutcome::UpToDate { run_id, .. } if *run_id == manifest.run_id),
        "{:?}",
        report.outcome
    );
    // Nothing written into the committed run: its folder holds exactly the listed parts.
    let after = snapshot(&root);
    let run_dir = root
        .join(job.partition().prefix())
        .join(format!("run={}", manifest.run_id));
    let in_run: Vec<&PathBuf> = after.keys().filter(|p| p.starts_with(&run_dir)).collect();
    let listed: Vec<PathBuf> = manifest.parts.iter().map(|p| root.join(&p.key)).collect();
    assert_eq!(in_run, listed.iter().collect::<Vec<_>>());
    assert!(
        committed_bytes(&before, &root, &manifest) == committed_bytes(&after, &root, &manifest)
    );
}

#[tokio::test]
async fn a_committed_day_with_a_lost_part_is_exported_again() {
    let h = Harness::start(Scenario::test()).await;
    let org = h.org(0);
    let job = h.jobs(&org)[1].clone();
    let first = org_exporter(&org, &settings(), &h.ports, "first").unwrap();
    first.exporter.run(&job, &NoProgress).await.unwrap();
    let manifest = h.sink.manifest(&job.partition()).await.unwrap().unwrap();
    std::fs::remove_file(h.sink.root().join(&manifest.parts[0].key)).unwrap();

    let again = org_exporter(&org, &settings(), &h.ports, "again").unwrap();
    let report = again.exporter.run(&job, &NoProgress).await.unwrap();
    let ExportOutcome::Committed(second) = report.outcome else {
        panic!("{:?}", report.outcome)
    };
    assert_ne!(second.run_id, manifest.run_id);
    let committed = read_committed(h.sink.as_ref() as &dyn ExportSink, &job.partition())
        .await
        .unwrap()
        .unwrap();
    let exported: BTreeMap<String, String> = committed
        .evaluations
        .into_iter()
        .map(|e| (e.id, e.evaluation))
        .collect();
    assert_same(&exported, &truth(&h, &job, DateField::SubmittedDate));
}
