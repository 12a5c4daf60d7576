//! The route table: what a route declaration in `routes!` expands to, and what is derived from
//! the table (the `matchit` router, `Allow`, metric names, reserved codes).
//!
//! Routes are declared once, in the one `routes!` invocation in [`super::routes`]: a path, its
//! metric name, and per method the function building its OpenAPI operation and the handler
//! call. From that the macro
//! makes the [`super::Route`] enum, the static [`super::ROUTES`] table and the
//! dispatch `match` (a plain static match: no boxing, no `dyn` on the redirect path).

use std::sync::OnceLock;

use http::{HeaderValue, Method};

use super::{Route, ROUTES};

/// One path of the table.
pub struct RouteSpec {
    pub path: &'static str,
    pub route: Route,
    /// The `route` label in metrics and logs.
    pub name: &'static str,
    /// The methods declared for the path, in declaration order (HEAD is also served wherever
    /// GET is, see [`RouteSpec::serves`]).
    pub methods: &'static [Method],
    /// One OpenAPI operation per declared method, in the same order.
    pub operations: &'static [OperationSpec],
}

/// A declared method of a route and the OpenAPI operation that documents it.
pub struct OperationSpec {
    pub method: Method,
    /// Builds the operation (`operationId`, parameters, body, every response).
    pub doc: fn() -> super::openapi::Operation,
}

/// Declares the routes: expands to the `Route` enum, the `ROUTES` table and `call`, the
/// dispatch `match`. Used once, in `routes/mod.rs`; see there for the syntax.
macro_rules! routes {
    (
        |$app:ident, $ctx:ident, $param:ident, $body:ident, $started:ident|
        $(
            $path:literal => $variant:ident as $name:literal {
                $( $method:ident $doc:path => $handler:expr ),+ $(,)?
            }
        ),+ $(,)?
    ) => {
        /// A path of the table; see [`ROUTES`].
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum Route {
            $($variant),+
        }

        /// The table: the router, `Allow`, metric names, reserved codes and the OpenAPI paths
        /// all come from it.
        pub static ROUTES: &[$crate::http::router::RouteSpec] = &[
            $($crate::http::router::RouteSpec {
                path: $path,
                route: Route::$variant,
                name: $name,
                methods: &[$(::http::Method::$method),+],
                operations: &[$($crate::http::router::OperationSpec {
                    method: ::http::Method::$method,
                    doc: $doc,
                }),+],
            }),+
        ];

        /// Calls the handler declared for `route` and `method` (HEAD already mapped to GET
        /// where the route declares no HEAD of its own).
        async fn call(
            route: Route,
            method: &::http::Method,
            $app: &$crate::app::App,
            $ctx: &$crate::http::request::RequestCtx,
            $param: String,
            $body: ::bytes::Bytes,
            $started: ::std::time::Instant,
        ) -> Result<::http::Response<$crate::http::Body>, $crate::http::ApiError> {
            // Silences "unused" for routes that need none of these.
            let _ = (&$param, &$body, &$started);
            match (route, method) {
                $($( (Route::$variant, &::http::Method::$method) => $handler, )+)+
                // `handle` answers 405 before dispatching a method the route does not serve.
                (route, _) => Err($crate::http::ApiError::MethodNotAllowed(
                    $crate::http::router::spec(route).allow(),
                )),
            }
        }
    };
}
pub(crate) use routes;

/// The table entry of `route`.
pub fn spec(route: Route) -> &'static RouteSpec {
    ROUTES
        .iter()
        .find(|r| r.route == route)
        .unwrap_or(&ROUTES[0])
}

impl RouteSpec {
    /// Whether the route answers `method`: its own methods, and HEAD wherever GET is served
    /// (answered like GET, without the body).
    pub fn serves(&self, method: &Method) -> bool {
        self.methods.contains(method)
            || (*method == Method::HEAD && self.methods.contains(&Method::GET))
    }

    /// The method whose handler answers `method`: HEAD is answered by GET's handler unless
    /// the route declares HEAD itself (only the redirect does: HEAD records no click).
    pub fn handler_method<'m>(&self, method: &'m Method) -> &'m Method {
        if *method == Method::HEAD && !self.methods.contains(&Method::HEAD) {
            &Method::GET
        } else {
            method
        }
    }

    /// The `Allow` header: the route's methods, HEAD with GET, and OPTIONS.
    pub fn allow(&self) -> &'static HeaderValue {
        static ALLOW: OnceLock<Vec<HeaderValue>> = OnceLock::new();
        let all = ALLOW.get_or_init(|| {
            ROUTES
                .iter()
                .map(|r| {
                    let mut names: Vec<&str> = Vec::new();
                    for m in r.methods {
                        names.push(m.as_str());
                        if *m == Method::GET && !r.methods.contains(&Method::HEAD) {
                            names.push("HEAD");
                        }
                    }
                    names.push("OPTIONS");
                    HeaderValue::from_str(&names.join(", "))
                        .unwrap_or_else(|_| HeaderValue::from_static("OPTIONS"))
                })
                .collect()
        });
        let idx = ROUTES
            .iter()
            .position(|r| std::ptr::eq(r, self))
            .unwrap_or(0);
        &all[idx]
    }
}

/// Metric label for requests that matched no route.
pub const UNMATCHED: &str = "unmatched";

/// Route names indexed like [`ROUTES`], plus `UNMATCHED` last.
pub fn route_names() -> Vec<&'static str> {
    ROUTES
        .iter()
        .map(|r| r.name)
        .chain(std::iter::once(UNMATCHED))
        .collect()
}

/// Top-level path segments the router serves; a custom code may not take one.
pub fn is_reserved_code(code: &str) -> bool {
    ROUTES.iter().any(|r| {
        let first = r
            .path
            .trim_start_matches('/')
            .split('/')
            .next()
            .unwrap_or("");
        !first.starts_with('{') && first.eq_ignore_ascii_case(code)
    })
}

/// The `matchit` router over [`ROUTES`]; its values are indexes into the table.
pub fn router() -> &'static matchit::Router<usize> {
    static ROUTER: OnceLock<matchit::Router<usize>> = OnceLock::new();
    ROUTER.get_or_init(|| {
        let mut r = matchit::Router::new();
        for (i, spec) in ROUTES.iter().enumerate() {
            // The table is static and covered by tests; a conflict is a programming error.
            #[allow(clippy::expect_used)]
            r.insert(spec.path, i)
                .expect("route table has no conflicts");
        }
        r
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_route_table_builds_a_router() {
        let r = router();
        let at = |path: &str| ROUTES[*r.at(path).expect("match").value].route;
        assert_eq!(at("/abc"), Route::Redirect);
        assert_eq!(at("/api/abc"), Route::ApiRedirect);
        assert_eq!(at("/api/analytics/global"), Route::GlobalAnalytics);
        assert_eq!(at("/api/analytics/abc"), Route::LinkAnalytics);
        assert_eq!(at("/api/campaigns/link"), Route::CampaignLink);
        assert_eq!(at("/health"), Route::Health);
        assert!(r.at("/a/b/c/d").is_err());
    }

    #[test]
    fn top_level_paths_are_reserved_codes() {
        for code in ["api", "health", "ready", "metrics", "API"] {
            assert!(is_reserved_code(code), "{code}");
        }
        assert!(!is_reserved_code("hello"));
    }

    #[test]
    fn allow_lists_the_declared_methods_with_head_after_get_and_options_last() {
        let allow = |route| spec(route).allow().to_str().expect("ascii").to_string();
        assert_eq!(allow(Route::Redirect), "GET, HEAD, OPTIONS");
        assert_eq!(allow(Route::Link), "GET, HEAD, PATCH, DELETE, OPTIONS");
        assert_eq!(allow(Route::Campaigns), "GET, HEAD, POST, OPTIONS");
        assert_eq!(allow(Route::Shorten), "POST, OPTIONS");
        assert_eq!(allow(Route::Webhook), "PATCH, OPTIONS");
    }

    #[test]
    fn every_declared_method_has_exactly_one_operation_and_ids_are_unique() {
        let mut ids = std::collections::BTreeSet::new();
        for r in ROUTES {
            let methods: Vec<&Method> = r.operations.iter().map(|o| &o.method).collect();
            assert_eq!(methods, r.methods.iter().collect::<Vec<_>>(), "{}", r.path);
            for o in r.operations {
                let id = (o.doc)().operation_id.expect("every operation has an id");
                assert!(ids.insert(id.clone()), "{id} twice");
            }
        }
    }

    #[test]
    fn head_is_answered_by_get_unless_the_route_declares_it() {
        assert_eq!(
            spec(Route::Redirect).handler_method(&Method::HEAD),
            Method::HEAD
        );
        assert_eq!(
            spec(Route::Links).handler_method(&Method::HEAD),
            Method::GET
        );
        assert_eq!(spec(Route::Links).handler_method(&Method::GET), Method::GET);
    }
}
