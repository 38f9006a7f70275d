//! A store in an S3 bucket (aws-sdk-s3), or any S3-compatible server.
//!
//! Create-if-absent is `PutObject` with `If-None-Match: *`; the server answers
//! 412 when the key exists. Credentials come only from the aws-config chain
//! (environment, profile, SSO, instance metadata) and are never logged. An
//! endpoint override (`--s3-endpoint` or `AWS_ENDPOINT_URL`) switches to
//! path-style addressing, as MinIO and moto need. Throttling, 5xx answers and
//! dropped connections are retried by the SDK's standard retry mode with
//! backoff, and reported as transient when they persist.

use std::future::Future;
use std::sync::Arc;

use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{Delete, ObjectIdentifier};
use aws_sdk_s3::Client;

use super::{PutOutcome, Store, StoreError};
use crate::id::{validate_key, validate_prefix};

/// Requests in flight at once for one batch.
const BATCH_CONCURRENCY: usize = 32;

/// Where and how to reach the bucket.
#[derive(Debug, Clone, Default)]
pub struct S3Config {
    /// Bucket name.
    pub bucket: String,
    /// Key prefix inside the bucket ("" or ending in `/`).
    pub prefix: String,
    /// Endpoint override (moto, MinIO); implies path-style addressing.
    pub endpoint: Option<String>,
    /// Region; the aws-config chain's, else `us-east-1`.
    pub region: Option<String>,
}

impl S3Config {
    /// Parses `s3://BUCKET[/PREFIX]`.
    pub fn from_url(url: &str, endpoint: Option<String>) -> Result<Self, StoreError> {
        let bad = |message: &str| StoreError::Permanent {
            op: "open store",
            key: url.to_owned(),
            message: message.to_owned(),
        };
        let rest = url
            .strip_prefix("s3://")
            .ok_or_else(|| bad("an S3 store is written s3://BUCKET/PREFIX"))?;
        let (bucket, prefix) = match rest.split_once('/') {
            Some((b, p)) => (b, p.trim_matches('/')),
            None => (rest, ""),
        };
        if bucket.is_empty() {
            return Err(bad("the bucket name is missing (s3://BUCKET/PREFIX)"));
        }
        if !prefix.is_empty() {
            validate_key(prefix)?;
        }
        Ok(Self {
            bucket: bucket.to_owned(),
            prefix: if prefix.is_empty() {
                String::new()
            } else {
                format!("{prefix}/")
            },
            endpoint: endpoint
                .or_else(|| std::env::var("AWS_ENDPOINT_URL_S3").ok())
                .or_else(|| std::env::var("AWS_ENDPOINT_URL").ok()),
            region: None,
        })
    }
}

/// An S3 bucket (under a prefix) as a [`Store`].
#[derive(Debug)]
pub struct S3Store {
    client: Client,
    config: S3Config,
    rt: Arc<tokio::runtime::Runtime>,
}

fn classify<E>(op: &'static str, key: &str, err: SdkError<E, HttpResponse>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let status = err.raw_response().map(|r| r.status().as_u16());
    let code = err.code().map(str::to_owned);
    let message = match (&code, err.message()) {
        (Some(c), Some(m)) => format!("{c}: {m}"),
        (Some(c), None) => c.clone(),
        _ => aws_smithy_error_chain(&err),
    };
    if message.contains("loading credentials") || message.contains("no credentials") {
        return StoreError::Permanent {
            op,
            key: key.to_owned(),
            message: "no AWS credentials found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE".to_owned(),
        };
    }
    let transient = matches!(
        err,
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_)
    ) || status.is_some_and(|s| s >= 500 || s == 429 || s == 409)
        || matches!(
            code.as_deref(),
            Some(
                "SlowDown"
                    | "ThrottlingException"
                    | "RequestTimeout"
                    | "InternalError"
                    | "ConditionalRequestConflict"
            )
        );
    let key = key.to_owned();
    if transient {
        return StoreError::Transient { op, key, message };
    }
    let hint = match (status, code.as_deref()) {
        (_, Some("NoSuchBucket")) => " (the bucket does not exist: create it or fix the store URL)",
        (Some(403), _)
        | (_, Some("AccessDenied" | "InvalidAccessKeyId" | "SignatureDoesNotMatch")) => {
            " (credentials refused: check AWS_ACCESS_KEY_ID / AWS_PROFILE and the bucket policy)"
        }
        _ => "",
    };
    StoreError::Permanent {
        op,
        key,
        message: format!("{message}{hint}"),
    }
}

fn aws_smithy_error_chain(err: &dyn std::error::Error) -> String {
    let mut s = err.to_string();
    let mut src = err.source();
    while let Some(e) = src {
        s.push_str(": ");
        s.push_str(&e.to_string());
        src = e.source();
    }
    s
}

impl S3Store {
    /// Connects and checks that the bucket exists and the credentials are
    /// accepted, so that a misconfiguration fails at once with a clear message.
    pub fn open(config: S3Config) -> Result<Self, StoreError> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("exoflow-s3")
            .enable_all()
            .build()
            .map_err(|e| StoreError::io("start S3 runtime", config.bucket.clone(), e))?;
        let cfg = config.clone();
        let client = rt.block_on(async move {
            let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
            if let Some(ep) = &cfg.endpoint {
                loader = loader.endpoint_url(ep);
            }
            if let Some(r) = &cfg.region {
                loader = loader.region(aws_config::Region::new(r.clone()));
            }
            let shared = loader.load().await;
            let mut b = aws_sdk_s3::config::Builder::from(&shared)
                .retry_config(aws_config::retry::RetryConfig::standard().with_max_attempts(5));
            if shared.region().is_none() {
                b = b.region(aws_config::Region::new("us-east-1"));
            }
            if cfg.endpoint.is_some() {
                b = b.force_path_style(true);
            }
            Client::from_conf(b.build())
        });
        let store = Self {
            client,
            config,
            rt: Arc::new(rt),
        };
        let c = store.client.clone();
        let bucket = store.config.bucket.clone();
        store
            .block(async move { c.head_bucket().bucket(&bucket).send().await })
            .map_err(|e| match classify("open store", &store.describe(), e) {
                StoreError::Permanent { op, key, message }
                    if message.contains("NotFound") || message.is_empty() =>
                {
                    StoreError::Permanent {
                        op,
                        key,
                        message: format!(
                            "{message} (the bucket does not exist: create it or fix the store URL)"
                        ),
                    }
                }
                other => other,
            })?;
        Ok(store)
    }

    fn full(&self, key: &str) -> String {
        format!("{}{key}", self.config.prefix)
    }

    fn block<F>(&self, f: F) -> F::Output
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        if tokio::runtime::Handle::try_current().is_err() {
            return self.rt.block_on(f);
        }
        // Called from inside some runtime: run on ours and wait on a channel.
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.rt.spawn(async move {
            let _ = tx.send(f.await);
        });
        match rx.recv() {
            Ok(v) => v,
            Err(_) => panic!("S3 runtime dropped a request future"),
        }
    }

    async fn put_if_absent_async(
        client: Client,
        bucket: String,
        full: String,
        key: String,
        body: Vec<u8>,
    ) -> Result<PutOutcome, StoreError> {
        let r = client
            .put_object()
            .bucket(bucket)
            .key(full)
            .if_none_match("*")
            .body(ByteStream::from(body))
            .send()
            .await;
        match r {
            Ok(_) => Ok(PutOutcome::Created),
            Err(e) => {
                if e.code() == Some("PreconditionFailed") {
                    return Ok(PutOutcome::AlreadyExists);
                }
                Err(classify("put_if_absent", &key, e))
            }
        }
    }

    fn list_raw(
        &self,
        prefix: &str,
        delimiter: bool,
    ) -> Result<(Vec<String>, Vec<String>), StoreError> {
        let client = self.client.clone();
        let bucket = self.config.bucket.clone();
        let full_prefix = self.full(prefix);
        let root = self.config.prefix.clone();
        let key = prefix.to_owned();
        self.block(async move {
            let mut keys = Vec::new();
            let mut dirs = Vec::new();
            let mut token: Option<String> = None;
            loop {
                let mut req = client
                    .list_objects_v2()
                    .bucket(&bucket)
                    .prefix(&full_prefix);
                if delimiter {
                    req = req.delimiter("/");
                }
                if let Some(t) = token.take() {
                    req = req.continuation_token(t);
                }
                let out = req.send().await.map_err(|e| classify("list", &key, e))?;
                for o in out.contents() {
                    if let Some(k) = o.key() {
                        keys.push(relative(&root, k, &key)?);
                    }
                }
                for p in out.common_prefixes() {
                    if let Some(k) = p.prefix() {
                        dirs.push(relative(&root, k, &key)?);
                    }
                }
                match out.next_continuation_token() {
                    Some(t) if out.is_truncated() == Some(true) => token = Some(t.to_owned()),
                    _ => break,
                }
            }
            Ok((keys, dirs))
        })
    }
}

impl Store for S3Store {
    fn put_if_absent(&self, key: &str, value: &[u8]) -> Result<PutOutcome, StoreError> {
        validate_key(key)?;
        let fut = Self::put_if_absent_async(
            self.client.clone(),
            self.config.bucket.clone(),
            self.full(key),
            key.to_owned(),
            value.to_vec(),
        );
        self.block(fut)
    }

    fn put_many_if_absent(&self, items: &[(&str, &[u8])]) -> Vec<Result<PutOutcome, StoreError>> {
        let mut out: Vec<Option<Result<PutOutcome, StoreError>>> = Vec::with_capacity(items.len());
        let mut jobs = Vec::new();
        for (i, (k, v)) in items.iter().enumerate() {
            match validate_key(k) {
                Ok(()) => {
                    out.push(None);
                    jobs.push((
                        i,
                        Self::put_if_absent_async(
                            self.client.clone(),
                            self.config.bucket.clone(),
                            self.full(k),
                            (*k).to_owned(),
                            v.to_vec(),
                        ),
                    ));
                }
                Err(e) => out.push(Some(Err(e.into()))),
            }
        }
        let results = self.block(async move {
            let sem = Arc::new(tokio::sync::Semaphore::new(BATCH_CONCURRENCY));
            let mut handles = Vec::new();
            for (i, fut) in jobs {
                let sem = sem.clone();
                handles.push(tokio::spawn(async move {
                    let _permit = sem.acquire_owned().await;
                    (i, fut.await)
                }));
            }
            let mut res = Vec::new();
            for h in handles {
                match h.await {
                    Ok(r) => res.push(Ok(r)),
                    Err(e) => res.push(Err(e.to_string())),
                }
            }
            res
        });
        for r in results {
            match r {
                Ok((i, r)) => out[i] = Some(r),
                Err(msg) => tracing::error!(%msg, "S3 batch request task failed"),
            }
        }
        out.into_iter()
            .zip(items)
            .map(|(r, (k, _))| {
                r.unwrap_or_else(|| {
                    Err(StoreError::Transient {
                        op: "put_if_absent",
                        key: (*k).to_owned(),
                        message: "request task failed".to_owned(),
                    })
                })
            })
            .collect()
    }

    fn put(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        validate_key(key)?;
        let client = self.client.clone();
        let bucket = self.config.bucket.clone();
        let full = self.full(key);
        let body = value.to_vec();
        let key = key.to_owned();
        self.block(async move {
            client
                .put_object()
                .bucket(bucket)
                .key(full)
                .body(ByteStream::from(body))
                .send()
                .await
                .map(|_| ())
                .map_err(|e| classify("put", &key, e))
        })
    }

    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        validate_key(key)?;
        let client = self.client.clone();
        let bucket = self.config.bucket.clone();
        let full = self.full(key);
        let key = key.to_owned();
        self.block(async move {
            match client.get_object().bucket(bucket).key(full).send().await {
                Ok(out) => {
                    let data = out
                        .body
                        .collect()
                        .await
                        .map_err(|e| StoreError::Transient {
                            op: "get",
                            key: key.clone(),
                            message: format!("reading the body: {e}"),
                        })?;
                    Ok(Some(data.into_bytes().to_vec()))
                }
                Err(e) => {
                    if e.as_service_error().is_some_and(|se| se.is_no_such_key())
                        || e.code() == Some("NoSuchKey")
                    {
                        return Ok(None);
                    }
                    Err(classify("get", &key, e))
                }
            }
        })
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        validate_prefix(prefix)?;
        let (mut keys, _) = self.list_raw(prefix, false)?;
        keys.sort_unstable();
        Ok(keys)
    }

    fn list_dir(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        validate_prefix(prefix)?;
        let (keys, dirs) = self.list_raw(prefix, true)?;
        let mut out: Vec<String> = keys
            .into_iter()
            .chain(dirs)
            .filter_map(|k| k.strip_prefix(prefix).map(str::to_owned))
            .filter(|k| !k.is_empty())
            .collect();
        out.sort_unstable();
        Ok(out)
    }

    fn delete(&self, key: &str) -> Result<(), StoreError> {
        validate_key(key)?;
        let client = self.client.clone();
        let bucket = self.config.bucket.clone();
        let full = self.full(key);
        let key = key.to_owned();
        self.block(async move {
            client
                .delete_object()
                .bucket(bucket)
                .key(full)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| classify("delete", &key, e))
        })
    }

    fn delete_prefix(&self, prefix: &str) -> Result<usize, StoreError> {
        let keys = self.list(prefix)?;
        let n = keys.len();
        for chunk in keys.chunks(1000) {
            let objects = chunk
                .iter()
                .map(|k| ObjectIdentifier::builder().key(self.full(k)).build())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| StoreError::Permanent {
                    op: "delete_prefix",
                    key: prefix.to_owned(),
                    message: e.to_string(),
                })?;
            let delete = Delete::builder()
                .set_objects(Some(objects))
                .quiet(true)
                .build()
                .map_err(|e| StoreError::Permanent {
                    op: "delete_prefix",
                    key: prefix.to_owned(),
                    message: e.to_string(),
                })?;
            let client = self.client.clone();
            let bucket = self.config.bucket.clone();
            let key = prefix.to_owned();
            self.block(async move {
                client
                    .delete_objects()
                    .bucket(bucket)
                    .delete(delete)
                    .send()
                    .await
                    .map(|_| ())
                    .map_err(|e| classify("delete_prefix", &key, e))
            })?;
        }
        Ok(n)
    }

    fn describe(&self) -> String {
        format!("s3://{}/{}", self.config.bucket, self.config.prefix)
    }
}

/// A listed key relative to the store's root `root`: an error naming it if
/// the server listed a key outside the root (it was asked for keys under
/// it), never a slice past its end.
fn relative(root: &str, listed: &str, asked: &str) -> Result<String, StoreError> {
    listed
        .strip_prefix(root)
        .map(str::to_owned)
        .ok_or_else(|| StoreError::Permanent {
            op: "list",
            key: asked.to_owned(),
            message: format!("the server listed {listed:?}, outside the store's prefix {root:?}"),
        })
}

#[cfg(test)]
mod relative_tests {
    #[test]
    fn a_key_outside_the_root_is_an_error_not_a_panic() {
        assert_eq!(
            super::relative("p/", "p/a/b", "a/").ok().as_deref(),
            Some("a/b")
        );
        let e = super::relative("prefix/", "x", "a/").expect_err("outside");
        assert!(e.to_string().contains("outside the store's prefix"), "{e}");
        assert!(super::relative("prefix/", "préfix/a", "a/").is_err());
    }
}
