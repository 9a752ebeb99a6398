//! Where files live: a URL (`file:///data/out`, a plain path, `s3://bucket/prefix`,
//! `memory://`) or any [`ObjectStore`] with a prefix.

use std::sync::Arc;
use std::time::Duration;

use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{ObjectStore, RetryConfig};

use crate::error::FileError;

/// How to reach S3 or an S3-compatible server, beyond what the environment says.
///
/// Credentials and region come from the standard variables (`AWS_ACCESS_KEY_ID`,
/// `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_REGION`, `AWS_ENDPOINT`), read by
/// `object_store`'s `AmazonS3Builder::from_env`; the settings here override them.
#[derive(Debug, Clone)]
pub struct S3Settings {
    /// An endpoint such as `http://127.0.0.1:9000` for an S3-compatible server. Plain HTTP
    /// is allowed exactly when the endpoint says `http://`.
    pub endpoint: Option<String>,
    /// The region (`AWS_REGION` otherwise, then `us-east-1`).
    pub region: Option<String>,
    /// How long one request is retried (with backoff) before the error reaches the job:
    /// an unreachable server fails the job after this long, never silently.
    pub retry_timeout: Duration,
}

impl Default for S3Settings {
    fn default() -> Self {
        S3Settings {
            endpoint: None,
            region: None,
            retry_timeout: Duration::from_secs(60),
        }
    }
}

/// A store and a prefix in it: where a [`FileSink`](crate::FileSink) writes and a
/// [`FileSource`](crate::FileSource) reads. Cheap to clone.
///
/// ```
/// use rill_files::StoreLocation;
///
/// let dir = std::env::temp_dir().join(format!("rill-doc-location-{}", std::process::id()));
/// let local = StoreLocation::parse(&format!("file://{}", dir.display()))?;
/// assert!(local.url().starts_with("file:///"));
/// let memory = StoreLocation::parse("memory://")?;
/// assert_eq!(memory.url(), "memory://");
/// # std::fs::remove_dir_all(&dir).ok();
/// # Ok::<(), rill_files::FileError>(())
/// ```
#[derive(Debug, Clone)]
pub struct StoreLocation {
    pub(crate) store: Arc<dyn ObjectStore>,
    pub(crate) prefix: Path,
    url: String,
    bucket: Option<String>,
}

impl StoreLocation {
    /// Opens a location with default [`S3Settings`].
    pub fn parse(url: &str) -> Result<StoreLocation, FileError> {
        Self::parse_with(url, &S3Settings::default())
    }

    /// Opens `file:///abs/path` (or a plain path; the directory is created), `memory://`
    /// (a fresh in-memory store, for tests) or `s3://bucket/prefix` (with `s3`).
    pub fn parse_with(url: &str, s3: &S3Settings) -> Result<StoreLocation, FileError> {
        let refuse = |reason: String| FileError::Location {
            url: url.to_string(),
            reason,
        };
        if let Some(rest) = url.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(refuse("no bucket after s3://".into()));
            }
            let mut builder = AmazonS3Builder::from_env()
                .with_bucket_name(bucket)
                .with_retry(RetryConfig {
                    retry_timeout: s3.retry_timeout,
                    ..RetryConfig::default()
                });
            if let Some(endpoint) = &s3.endpoint {
                builder = builder
                    .with_endpoint(endpoint)
                    .with_allow_http(endpoint.starts_with("http://"))
                    // S3-compatible servers on one host address buckets by path.
                    .with_virtual_hosted_style_request(false);
            }
            if let Some(region) = &s3.region {
                builder = builder.with_region(region);
            }
            let store = builder.build().map_err(|e| refuse(e.to_string()))?;
            let prefix = prefix.trim_end_matches('/');
            return Ok(StoreLocation {
                store: Arc::new(store),
                prefix: Path::from(prefix),
                url: format!("s3://{bucket}/{prefix}")
                    .trim_end_matches('/')
                    .to_string(),
                bucket: Some(bucket.to_string()),
            });
        }
        if url == "memory://" || url == "memory:///" {
            return Ok(Self::from_store(Arc::new(InMemory::new()), "", "memory://"));
        }
        let path = match url.strip_prefix("file://") {
            Some(p) => p,
            None if url.contains("://") => {
                return Err(refuse(
                    "rill opens file://, s3:// and memory:// locations; wrap any other \
                     object_store with StoreLocation::from_store"
                        .into(),
                ))
            }
            None => url,
        };
        let dir = std::path::absolute(path).map_err(|e| refuse(e.to_string()))?;
        std::fs::create_dir_all(&dir).map_err(|e| refuse(format!("creating it: {e}")))?;
        let store = LocalFileSystem::new_with_prefix(&dir).map_err(|e| refuse(e.to_string()))?;
        Ok(Self::from_store(
            Arc::new(store),
            "",
            &format!("file://{}", dir.display()),
        ))
    }

    /// Any object store (GCS, Azure, HTTP, a wrapper that injects failures) with a prefix
    /// inside it; `url` is how errors and logs name the location.
    pub fn from_store(store: Arc<dyn ObjectStore>, prefix: &str, url: &str) -> StoreLocation {
        StoreLocation {
            store,
            prefix: Path::from(prefix.trim_matches('/')),
            url: match url.strip_suffix('/') {
                Some(u) if !u.ends_with(':') && !url.ends_with("://") => u.to_string(),
                _ => url.to_string(),
            },
            bucket: None,
        }
    }

    /// The location as a URL, for messages.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The location of `relative` (a `/`-separated path below the prefix).
    pub(crate) fn child(&self, relative: &str) -> Path {
        let mut parts: Vec<String> = self
            .prefix
            .parts()
            .map(|p| p.as_ref().to_string())
            .collect();
        parts.extend(
            relative
                .split('/')
                .filter(|p| !p.is_empty())
                .map(str::to_string),
        );
        Path::from_iter(parts)
    }

    /// The URL of a path in the store, for messages.
    pub(crate) fn url_of(&self, path: &Path) -> String {
        let relative = path
            .prefix_match(&self.prefix)
            .map(|parts| {
                parts
                    .map(|p| p.as_ref().to_string())
                    .collect::<Vec<_>>()
                    .join("/")
            })
            .unwrap_or_else(|| path.to_string());
        format!("{}/{relative}", self.url)
    }

    /// The bucket, for S3 locations.
    pub(crate) fn bucket(&self) -> Option<&str> {
        self.bucket.as_deref()
    }
}
