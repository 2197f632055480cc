//! aws-sdk-s3 clients of a test server: path-style with the test credentials (or others),
//! and virtual-host style with its own resolver of `*.localhost` and a log of request URIs.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_s3::config::interceptors::BeforeTransmitInterceptorContextRef;
use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{BehaviorVersion, ConfigBag, Credentials, Intercept, Region, RuntimeComponents};
use aws_sdk_s3::error::BoxError;
use aws_sdk_s3::Client;
use aws_smithy_runtime_api::client::dns::{DnsFuture, ResolveDns, ResolveDnsError};

use crate::process::{TestServer, ACCESS_KEY, SECRET_KEY};

/// Region every client signs for.
pub const REGION: &str = "us-east-1";

impl TestServer {
    /// A path-style client with the test credentials.
    pub fn client(&self) -> Client {
        self.client_with_credentials(ACCESS_KEY, SECRET_KEY)
    }

    /// A path-style client signing with these credentials (right or wrong).
    pub fn client_with_credentials(&self, access_key: &str, secret_key: &str) -> Client {
        Client::from_conf(
            base_config(access_key, secret_key)
                .endpoint_url(self.endpoint())
                .force_path_style(true)
                .build(),
        )
    }

    /// A client addressing buckets as `<bucket>.localhost:<port>`. Names under
    /// `localhost` are resolved to 127.0.0.1 by the client itself, and the
    /// returned log holds the URI of every request it transmitted.
    pub fn virtual_host_client(&self) -> (Client, RequestLog) {
        let http_client = aws_smithy_http_client::Builder::new()
            .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
                aws_smithy_http_client::tls::rustls_provider::CryptoMode::AwsLc,
            ))
            .pool_idle_timeout(POOL_IDLE)
            .build_with_resolver(LoopbackResolver);
        let log = RequestLog::default();
        let conf = base_config(ACCESS_KEY, SECRET_KEY)
            .endpoint_url(format!("http://localhost:{}", self.port()))
            .force_path_style(false)
            .http_client(http_client)
            .interceptor(log.clone())
            .build();
        (Client::from_conf(conf), log)
    }
}

/// How long a client keeps an idle connection for reuse: well under the gateway's 20 s
/// header timeout, which also closes idle HTTP/1.1 connections. With the SDK's 90 s default a
/// request sent on a connection idle for about 20 s meets the server closing it ("connection
/// closed before message completed"); real clients retry that, but these have retries off.
const POOL_IDLE: Duration = Duration::from_secs(10);

fn base_config(access_key: &str, secret_key: &str) -> aws_sdk_s3::config::Builder {
    let http_client = aws_smithy_http_client::Builder::new()
        .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
            aws_smithy_http_client::tls::rustls_provider::CryptoMode::AwsLc,
        ))
        .pool_idle_timeout(POOL_IDLE)
        .build_https();
    aws_sdk_s3::Config::builder()
        .http_client(http_client)
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(REGION))
        .credentials_provider(Credentials::new(access_key, secret_key, None, None, "s3-compat-tests"))
        // Every error must surface as the server sent it; a retried 503 or
        // 500 would hide the first answer.
        .retry_config(RetryConfig::disabled())
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(10))
                .operation_timeout(Duration::from_secs(180))
                .build(),
        )
}

#[derive(Debug, Clone)]
struct LoopbackResolver;

impl ResolveDns for LoopbackResolver {
    fn resolve_dns<'a>(&'a self, name: &'a str) -> DnsFuture<'a> {
        if name == "localhost" || name.ends_with(".localhost") {
            DnsFuture::ready(Ok(vec![IpAddr::V4(Ipv4Addr::LOCALHOST)]))
        } else {
            DnsFuture::ready(Err(ResolveDnsError::new(format!(
                "test resolver only knows *.localhost, not {name}"
            ))))
        }
    }
}

/// URIs of the requests a client sent, in order.
#[derive(Debug, Clone, Default)]
pub struct RequestLog(Arc<Mutex<Vec<String>>>);

impl RequestLog {
    /// The URIs sent so far.
    pub fn uris(&self) -> Vec<String> {
        self.0.lock().expect("request log").clone()
    }
}

impl Intercept for RequestLog {
    fn name(&self) -> &'static str {
        "RequestLog"
    }

    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        self.0
            .lock()
            .expect("request log")
            .push(context.request().uri().to_owned());
        Ok(())
    }
}
