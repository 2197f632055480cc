//! Virtual-host-style addressing: `bucket.<domain>[:port]` names the bucket.

use s3s::host::{S3Host, VirtualHost};
use s3s::S3Result;

/// Recognises `bucket.domain` for the configured base domains; any other host (an IP, an
/// unknown name) is treated as path-style rather than refused.
#[derive(Debug, Clone)]
pub struct GatewayHost {
    domains: Vec<String>,
}

impl GatewayHost {
    /// A host parser for these base domains (lower-cased).
    #[must_use]
    pub fn new(domains: &[String]) -> Self {
        Self {
            domains: domains
                .iter()
                .map(|d| d.trim_end_matches('.').to_ascii_lowercase())
                .collect(),
        }
    }
}

impl S3Host for GatewayHost {
    fn parse_host_header<'a>(&'a self, host: &'a str) -> S3Result<VirtualHost<'a>> {
        let name = match host.rsplit_once(':') {
            Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
            _ => host,
        };
        let name = name.trim_end_matches('.');
        for d in &self.domains {
            if name.eq_ignore_ascii_case(d) {
                return Ok(VirtualHost::new(d.as_str()));
            }
            if name.len() > d.len() + 1 && name[name.len() - d.len()..].eq_ignore_ascii_case(d) {
                let bucket = &name[..name.len() - d.len()];
                if let Some(bucket) = bucket.strip_suffix('.') {
                    return Ok(VirtualHost::new(d.as_str()).with_bucket(bucket.to_ascii_lowercase()));
                }
            }
        }
        Ok(VirtualHost::new(name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_from_hosts() {
        let h = GatewayHost::new(&["localhost".into(), "s3.example.com".into()]);
        assert_eq!(
            h.parse_host_header("photos.localhost:9000").unwrap().bucket(),
            Some("photos")
        );
        assert_eq!(h.parse_host_header("a.b.s3.example.com").unwrap().bucket(), Some("a.b"));
        assert_eq!(h.parse_host_header("localhost:9000").unwrap().bucket(), None);
        assert_eq!(h.parse_host_header("gateway.internal").unwrap().bucket(), None);
        assert_eq!(h.parse_host_header("xlocalhost").unwrap().bucket(), None);
    }
}
