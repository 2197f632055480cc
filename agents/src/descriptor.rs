//! TEMPORARY compile stub (replaced by the descriptor parser).
#![allow(missing_docs)]
use control_api::BucketIntent;
pub struct App {
    pub name: String,
    pub components: Vec<String>,
    pub buckets: Vec<AppBucket>,
}
pub struct AppBucket {
    pub component: String,
    pub bucket: String,
    pub intent: BucketIntent,
}
pub fn parse(body: &[u8], _content_type: Option<&str>) -> Result<App, crate::Error> {
    let _ = body;
    Err(crate::Error::Invalid("stub".into()))
}
