//! What buckets must achieve and which apps asked for it: the continuum's northbound state,
//! mirrored by the cluster agent that configures the buckets. Stored under `intent/<bucket>`
//! and `app/<name>`. Tokens are kept (the agents present them) but never shown.

use crate::error::{Error, Result};
use crate::store::Store;
use control_api::{AppView, BucketIntent, IntentView};
use serde::{Deserialize, Serialize};

/// A bucket's intent as stored, token included.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredIntent {
    /// Bucket.
    pub bucket: String,
    /// The intent with its token.
    pub intent: BucketIntent,
    /// `operator` or `app:<name>`.
    pub source: String,
    /// When it was set, Unix ms.
    pub updated_ms: i64,
    /// `pending`, `applied` or `failed`.
    pub state: String,
    /// Why configuring the bucket failed.
    pub error: Option<String>,
    /// The plan uid that carries it down to the cluster (acknowledged once applied).
    pub plan_uid: uuid::Uuid,
    /// The cluster agent the continuum gave the bucket to (kept: its data lives there).
    #[serde(default)]
    pub cluster: Option<String>,
    /// The app component that declares the bucket (`None`: an operator's intent); the cluster
    /// places that component's containers near the bucket's data.
    #[serde(default)]
    pub component: Option<String>,
}

impl StoredIntent {
    /// The API's view: the token removed.
    #[must_use]
    pub fn view(&self) -> IntentView {
        let mut intent = self.intent.clone();
        let has_token = intent.policy_update_token.take().is_some();
        IntentView {
            bucket: self.bucket.clone(),
            intent,
            source: self.source.clone(),
            has_token,
            updated_ms: self.updated_ms,
            state: self.state.clone(),
            error: self.error.clone(),
            cluster: self.cluster.clone(),
        }
    }
}

/// A deployed app as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredApp {
    /// `MLSysOpsApp.name`.
    pub name: String,
    /// When it was deployed, Unix ms.
    pub deployed_ms: i64,
    /// Its components.
    pub components: Vec<String>,
    /// The buckets it declares.
    pub buckets: Vec<String>,
    /// The descriptor as received (JSON).
    pub descriptor: serde_json::Value,
}

/// Intents and apps; clones share the store.
#[derive(Clone)]
pub struct Intents {
    store: Store,
}

impl Intents {
    /// Over `store`.
    #[must_use]
    pub fn new(store: Store) -> Self {
        Self { store }
    }

    /// The intent of `bucket`.
    pub fn get(&self, bucket: &str) -> Result<Option<StoredIntent>> {
        self.store.get(&format!("intent/{bucket}"))
    }

    /// Stores `i`.
    pub fn put(&self, i: &StoredIntent) -> Result<()> {
        self.store.put(&format!("intent/{}", i.bucket), i)
    }

    /// Forgets the intent of `bucket` (the agents stop managing it; its policy stays).
    pub fn remove(&self, bucket: &str) -> Result<()> {
        self.store.delete(&format!("intent/{bucket}"))
    }

    /// Every intent, by bucket name.
    pub fn all(&self) -> Result<Vec<StoredIntent>> {
        self.store.scan("intent/", false, usize::MAX, |_| true)
    }

    /// Marks the intent carried by `plan_uid` applied or failed.
    pub fn settle(&self, bucket: &str, plan_uid: uuid::Uuid, error: Option<String>) -> Result<()> {
        if let Some(mut i) = self.get(bucket)? {
            if i.plan_uid == plan_uid {
                i.state = if error.is_some() { "failed" } else { "applied" }.to_owned();
                i.error = error;
                self.put(&i)?;
            }
        }
        Ok(())
    }

    /// Records that `bucket` lives in `cluster`, on whatever intent is stored for it now (a
    /// newer one may have replaced the one the choice was made for).
    pub fn assign(&self, bucket: &str, cluster: &str) -> Result<()> {
        if let Some(mut i) = self.get(bucket)? {
            i.cluster = Some(cluster.to_owned());
            i.error = None;
            self.put(&i)?;
        }
        Ok(())
    }

    /// Records why the intent carried by `plan_uid` waits, if it is still the stored one.
    pub fn note_waiting(&self, bucket: &str, plan_uid: uuid::Uuid, why: &str) -> Result<()> {
        if let Some(mut i) = self.get(bucket)? {
            if i.plan_uid == plan_uid && i.error.as_deref() != Some(why) {
                i.error = Some(why.to_owned());
                self.put(&i)?;
            }
        }
        Ok(())
    }

    /// The app `name`.
    pub fn app(&self, name: &str) -> Result<StoredApp> {
        self.store
            .get(&format!("app/{name}"))?
            .ok_or_else(|| Error::NotFound(format!("no app {name:?}")))
    }

    /// Whether app `name` exists.
    pub fn has_app(&self, name: &str) -> Result<bool> {
        Ok(self.store.get::<StoredApp>(&format!("app/{name}"))?.is_some())
    }

    /// Stores `app`.
    pub fn put_app(&self, app: &StoredApp) -> Result<()> {
        self.store.put(&format!("app/{}", app.name), app)
    }

    /// Removes app `name` (its buckets' intents stay: the data and its policy stay).
    pub fn remove_app(&self, name: &str) -> Result<StoredApp> {
        let app = self.app(name)?;
        self.store.delete(&format!("app/{name}"))?;
        Ok(app)
    }

    /// Every app.
    pub fn apps(&self) -> Result<Vec<StoredApp>> {
        self.store.scan("app/", false, usize::MAX, |_| true)
    }

    /// The API's view of `app`.
    pub fn app_view(&self, app: &StoredApp) -> Result<AppView> {
        let mut buckets = Vec::new();
        for b in &app.buckets {
            if let Some(i) = self.get(b)? {
                buckets.push(i.view());
            }
        }
        Ok(AppView {
            name: app.name.clone(),
            deployed_ms: app.deployed_ms,
            components: app.components.clone(),
            buckets,
        })
    }
}
