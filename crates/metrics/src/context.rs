//! The request/job context that fills the `method`, `host` and `path` labels of
//! `db_connection_open_duration_seconds`: a tokio task-local set per request or job.

use std::future::Future;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Arc;

/// The `method` value for background jobs. The reference labels every Celery task checkout
/// `method="celery"`; keeping the value keeps existing dashboards and alerts working.
pub const JOB_METHOD: &str = "celery";

/// The `path` value for a request that matched no route (the reference's Flask value).
pub const NO_ENDPOINT: &str = "No endpoint";

/// The value of all three labels for a checkout made outside any context.
pub const UNKNOWN: &str = "unknown";

/// Longest label value kept; longer values are cut (at a character boundary) to bound memory.
const MAX_LABEL_LEN: usize = 200;

/// What a request or job is, as the three labels `method`, `host` and `path`.
///
/// For HTTP: the method, the Host header and the route *template* (never the raw URL).
/// For a job: the worker kind, the app name and the task name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestContext {
    pub(crate) method: Arc<str>,
    pub(crate) host: Arc<str>,
    pub(crate) path: Arc<str>,
    /// Hash of the three values, computed once so the observer's cache lookups do not rehash.
    pub(crate) hash: u64,
}

impl RequestContext {
    /// A context for an HTTP request: method, Host header and route template.
    pub fn new(method: &str, host: &str, path: &str) -> RequestContext {
        let (method, host, path) = (label_value(method), label_value(host), label_value(path));
        let mut h = DefaultHasher::new();
        (&*method, &*host, &*path).hash(&mut h);
        RequestContext {
            method,
            host,
            path,
            hash: h.finish(),
        }
    }

    /// A context for a background job of app `app` running task `task` (`method` is [`JOB_METHOD`]).
    pub fn job(app: &str, task: &str) -> RequestContext {
        RequestContext::new(JOB_METHOD, app, task)
    }

    /// The `method` label value.
    pub fn method(&self) -> &str {
        &self.method
    }

    /// The `host` label value.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The `path` label value.
    pub fn path(&self) -> &str {
        &self.path
    }
}

fn label_value(value: &str) -> Arc<str> {
    if value.len() <= MAX_LABEL_LEN {
        return Arc::from(value);
    }
    let mut end = MAX_LABEL_LEN;
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    Arc::from(&value[..end])
}

tokio::task_local! {
    static CONTEXT: Arc<RequestContext>;
}

/// Runs `future` with `ctx` as the request context of every connection it checks out.
///
/// The context is a tokio task-local: a task spawned from inside does not inherit it; wrap the
/// spawned future too (`tokio::spawn(with_request_context(ctx.clone(), fut))`).
pub fn with_request_context<F: Future>(
    ctx: RequestContext,
    future: F,
) -> impl Future<Output = F::Output> {
    CONTEXT.scope(Arc::new(ctx), future)
}

/// Runs `future` as task `task` of background worker app `app` (labels `celery`, `app`, `task`).
pub fn with_job_context<F: Future>(
    app: &str,
    task: &str,
    future: F,
) -> impl Future<Output = F::Output> {
    with_request_context(RequestContext::job(app, task), future)
}

/// The context of the current task, if one is set.
pub fn current_context() -> Option<RequestContext> {
    CONTEXT.try_with(|c| RequestContext::clone(c)).ok()
}

/// The current context without cloning its strings (for the observer's hot path).
pub(crate) fn current_shared() -> Option<Arc<RequestContext>> {
    CONTEXT.try_with(Arc::clone).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn context_is_visible_inside_and_absent_outside() {
        assert_eq!(current_context(), None);
        let inside = with_request_context(
            RequestContext::new("GET", "api.example", "/v2/x/<id>"),
            async { current_context() },
        )
        .await;
        let ctx = inside.unwrap();
        assert_eq!(
            (ctx.method(), ctx.host(), ctx.path()),
            ("GET", "api.example", "/v2/x/<id>")
        );
        assert_eq!(current_context(), None);
    }

    #[tokio::test]
    async fn job_context_uses_the_reference_labels() {
        let ctx = with_job_context("notify-celery", "send-email", async { current_context() })
            .await
            .unwrap();
        assert_eq!(
            (ctx.method(), ctx.host(), ctx.path()),
            ("celery", "notify-celery", "send-email")
        );
    }

    #[test]
    fn long_values_are_cut_at_a_char_boundary() {
        let long = "é".repeat(150); // 300 bytes
        let ctx = RequestContext::new("GET", &long, "/");
        assert!(ctx.host().len() <= MAX_LABEL_LEN);
        assert!(ctx.host().len() >= MAX_LABEL_LEN - 1);
        assert!(ctx.host().chars().all(|c| c == 'é'));
    }
}
