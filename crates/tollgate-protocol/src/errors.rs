//! The Kuzzle error registry: every error id Tollgate can return, with its numeric code, status and
//! message template (see `shared/spec/errors.md`). One table, written by hand; the rest of the code
//! refers to these constants and never builds an error id from strings.

use serde::ser::{Serialize, SerializeStruct, Serializer};
use serde_json::Value;

/// One entry of the registry.
#[derive(Debug, PartialEq, Eq)]
pub struct ErrorDef {
    /// `<domain>.<subdomain>.<name>`
    pub id: &'static str,
    /// Domain code (`security` = 7, ...).
    pub domain: u8,
    /// Subdomain code within the domain.
    pub subdomain: u8,
    /// Error code within the subdomain.
    pub error: u16,
    /// HTTP-like status, fixed per id.
    pub status: u16,
    /// Message template with `{placeholder}`s, filled in order from the props.
    pub template: &'static str,
}

impl ErrorDef {
    /// `(domain << 24) | (subdomain << 16) | error`.
    pub const fn code(&self) -> u32 {
        ((self.domain as u32) << 24) | ((self.subdomain as u32) << 16) | self.error as u32
    }
}

macro_rules! error_table {
    ($( $(#[$doc:meta])* $name:ident = ($id:literal, $d:literal, $s:literal, $e:literal, $st:literal, $t:literal); )*) => {
        $( $(#[$doc])* pub const $name: ErrorDef = ErrorDef {
            id: $id, domain: $d, subdomain: $s, error: $e, status: $st, template: $t,
        }; )*
        /// Every entry of the registry.
        pub static ALL: &[&ErrorDef] = &[$(&$name),*];
    };
}

error_table! {
    /// `network.http.request_too_large`
    NETWORK_HTTP_REQUEST_TOO_LARGE = ("network.http.request_too_large", 3, 1, 1, 413, "Maximum HTTP request size exceeded.");
    /// `network.http.unexpected_error`
    NETWORK_HTTP_UNEXPECTED_ERROR = ("network.http.unexpected_error", 3, 1, 2, 400, "Caught an unexpected HTTP error: {reason}");
    /// `network.http.too_many_encodings`
    NETWORK_HTTP_TOO_MANY_ENCODINGS = ("network.http.too_many_encodings", 3, 1, 3, 400, "Too many encodings.");
    /// `network.http.unsupported_compression`
    NETWORK_HTTP_UNSUPPORTED_COMPRESSION = ("network.http.unsupported_compression", 3, 1, 4, 400, "Unsupported compression algorithm \"{algorithm}\".");
    /// `network.http.unsupported_verb`
    NETWORK_HTTP_UNSUPPORTED_VERB = ("network.http.unsupported_verb", 3, 1, 6, 400, "Unsupported HTTP verb \"{verb}\".");
    /// `network.http.url_not_found`
    NETWORK_HTTP_URL_NOT_FOUND = ("network.http.url_not_found", 3, 1, 7, 404, "API URL not found: {url}.");
    /// `network.http.unsupported_content`
    NETWORK_HTTP_UNSUPPORTED_CONTENT = ("network.http.unsupported_content", 3, 1, 8, 400, "Invalid request content-type. Expected \"application/json\", got: \"{contentType}\".");
    /// `network.http.unsupported_charset`
    NETWORK_HTTP_UNSUPPORTED_CHARSET = ("network.http.unsupported_charset", 3, 1, 9, 400, "Unsupported request charset. Expected \"utf-8\", got: \"{charset}\".");
    /// `network.http.volatile_parse_failed`
    NETWORK_HTTP_VOLATILE_PARSE_FAILED = ("network.http.volatile_parse_failed", 3, 1, 11, 400, "Unable to convert the \"x-kuzzle-volatile\" HTTP header to JSON: {reason}");
    /// `network.http.body_parse_failed`
    NETWORK_HTTP_BODY_PARSE_FAILED = ("network.http.body_parse_failed", 3, 1, 12, 400, "Unable to convert the HTTP body to JSON: {body}");
    /// `network.websocket.unexpected_error`
    NETWORK_WEBSOCKET_UNEXPECTED_ERROR = ("network.websocket.unexpected_error", 3, 3, 1, 400, "Caught an unexpected WebSocket error: {reason}");
    /// `network.websocket.ratelimit_exceeded`
    NETWORK_WEBSOCKET_RATELIMIT_EXCEEDED = ("network.websocket.ratelimit_exceeded", 3, 3, 2, 429, "Rejected: too many requests received from that socket");
    /// `api.assert.invalid_type`
    API_ASSERT_INVALID_TYPE = ("api.assert.invalid_type", 2, 1, 1, 400, "Wrong type for argument \"{argument}\" (expected: {type})");
    /// `api.assert.invalid_argument`
    API_ASSERT_INVALID_ARGUMENT = ("api.assert.invalid_argument", 2, 1, 2, 400, "Invalid argument \"{argument}\". Expected: {expected}");
    /// `api.assert.missing_argument`
    API_ASSERT_MISSING_ARGUMENT = ("api.assert.missing_argument", 2, 1, 3, 400, "Missing argument \"{argument}\".");
    /// `api.assert.empty_argument`
    API_ASSERT_EMPTY_ARGUMENT = ("api.assert.empty_argument", 2, 1, 4, 400, "The argument \"{argument}\" is empty.");
    /// `api.assert.mutually_exclusive`
    API_ASSERT_MUTUALLY_EXCLUSIVE = ("api.assert.mutually_exclusive", 2, 1, 5, 400, "Arguments \"{first}\" and \"{second}\" are mutually exclusive");
    /// `api.assert.unexpected_argument`
    API_ASSERT_UNEXPECTED_ARGUMENT = ("api.assert.unexpected_argument", 2, 1, 7, 400, "Unexpected argument \"{argument}\" (accepted arguments: {accepted})");
    /// `api.assert.body_required`
    API_ASSERT_BODY_REQUIRED = ("api.assert.body_required", 2, 1, 8, 400, "The request must specify a body.");
    /// `api.assert.forbidden_argument`
    API_ASSERT_FORBIDDEN_ARGUMENT = ("api.assert.forbidden_argument", 2, 1, 11, 400, "The argument \"{argument}\" is not allowed by this API action.");
    /// `api.process.overloaded`
    API_PROCESS_OVERLOADED = ("api.process.overloaded", 2, 2, 2, 503, "Request discarded: Kuzzle Server is temporarily overloaded.");
    /// `api.process.controller_not_found`
    API_PROCESS_CONTROLLER_NOT_FOUND = ("api.process.controller_not_found", 2, 2, 4, 404, "API controller \"{controller}\" not found.");
    /// `api.process.action_not_found`
    API_PROCESS_ACTION_NOT_FOUND = ("api.process.action_not_found", 2, 2, 5, 404, "API action \"{controller}\":\"{action}\" not found");
    /// `api.process.shutting_down`
    API_PROCESS_SHUTTING_DOWN = ("api.process.shutting_down", 2, 2, 7, 503, "Rejected: this node is shutting down.");
    /// `api.process.too_many_requests`
    API_PROCESS_TOO_MANY_REQUESTS = ("api.process.too_many_requests", 2, 2, 8, 429, "Rejected: requests rate limit exceeded for this user.");
    /// `api.process.admin_exists`
    API_PROCESS_ADMIN_EXISTS = ("api.process.admin_exists", 2, 2, 9, 412, "Admin user is already set.");
    /// `api.process.unauthorized_origin`
    API_PROCESS_UNAUTHORIZED_ORIGIN = ("api.process.unauthorized_origin", 2, 2, 12, 401, "The origin \"{origin}\" is not authorized.");
    /// `api.process.too_many_logins_requests`
    API_PROCESS_TOO_MANY_LOGINS_REQUESTS = ("api.process.too_many_logins_requests", 2, 2, 13, 429, "Rejected: Too many login attempts per second");
    /// `security.token.invalid`
    SECURITY_TOKEN_INVALID = ("security.token.invalid", 7, 1, 1, 401, "Invalid token.");
    /// `security.token.verification_error`
    SECURITY_TOKEN_VERIFICATION_ERROR = ("security.token.verification_error", 7, 1, 7, 500, "Error verifying token: {reason}");
    /// `security.token.ttl_exceeded`
    SECURITY_TOKEN_TTL_EXCEEDED = ("security.token.ttl_exceeded", 7, 1, 4, 400, "expiresIn value exceeds maximum allowed value");
    /// `security.token.expired`
    SECURITY_TOKEN_EXPIRED = ("security.token.expired", 7, 1, 6, 401, "Token expired");
    /// `security.token.refresh_forbidden`: `auth:refreshToken` with a token that never expires.
    /// Kuzzle 2.56's id, code and status; `errors.md` does not list it (`docs/protocol.md`).
    SECURITY_TOKEN_REFRESH_FORBIDDEN = ("security.token.refresh_forbidden", 7, 1, 8, 401, "{what} cannot be refreshed.");
    /// `security.credentials.unknown_strategy`
    SECURITY_CREDENTIALS_UNKNOWN_STRATEGY = ("security.credentials.unknown_strategy", 7, 2, 1, 400, "Unknown authentication strategy \"{strategy}\"");
    /// `security.credentials.rejected`
    SECURITY_CREDENTIALS_REJECTED = ("security.credentials.rejected", 7, 2, 3, 400, "Credentials rejected: {reason}");
    /// `kuzzle-plugin-auth-passport-local.weak-password`: a password shorter than the configured
    /// minimum. The id, code (`0xff0107`), status and message of Kuzzle's local strategy plugin,
    /// which raises it for a password its policy refuses (`docs/api/credentials.md`).
    LOCAL_STRATEGY_WEAK_PASSWORD = ("kuzzle-plugin-auth-passport-local.weak-password", 0, 0xff, 0x0107, 400, "Password is too weak");
    /// `security.rights.unauthorized`
    SECURITY_RIGHTS_UNAUTHORIZED = ("security.rights.unauthorized", 7, 3, 1, 401, "Unauthorized: authentication required to execute the action \"{controller}:{action}\".");
    /// `security.rights.forbidden`
    SECURITY_RIGHTS_FORBIDDEN = ("security.rights.forbidden", 7, 3, 2, 403, "Insufficient permissions to execute the action \"{controller}:{action}\" (User \"{kuid}\").");
    /// `security.rights.lockout` (Tollgate's own: Kuzzle has no lock-out guard)
    SECURITY_RIGHTS_LOCKOUT = ("security.rights.lockout", 7, 3, 51, 412, "This change would leave no user able to call security:updateProfile and security:updateRole. Send allowLockout: true to make it anyway.");
    /// `security.user.already_exists`
    SECURITY_USER_ALREADY_EXISTS = ("security.user.already_exists", 7, 4, 1, 412, "User {id} already exists.");
    /// `security.user.not_found`
    SECURITY_USER_NOT_FOUND = ("security.user.not_found", 7, 4, 2, 404, "User \"{id}\" not found.");
    /// `security.role.not_found`
    SECURITY_ROLE_NOT_FOUND = ("security.role.not_found", 7, 5, 1, 404, "Role \"{id}\" not found.");
    /// `security.role.login_required`
    SECURITY_ROLE_LOGIN_REQUIRED = ("security.role.login_required", 7, 5, 2, 400, "Cannot remove the \"login\" action from the anonymous role.");
    /// `security.role.cannot_delete`
    SECURITY_ROLE_CANNOT_DELETE = ("security.role.cannot_delete", 7, 5, 3, 400, "The following roles are protected and cannot be deleted: anonymous, default, admin");
    /// `security.role.in_use`
    SECURITY_ROLE_IN_USE = ("security.role.in_use", 7, 5, 4, 412, "The role \"{id}\" is still used and cannot be deleted.");
    /// `security.role.unknown_controller`
    SECURITY_ROLE_UNKNOWN_CONTROLLER = ("security.role.unknown_controller", 7, 5, 9, 400, "Trying to set role {role} with a non-existing controller '{controller}'.");
    /// `security.role.unknown_action`
    SECURITY_ROLE_UNKNOWN_ACTION = ("security.role.unknown_action", 7, 5, 10, 400, "Trying to set role {role} with a non-existing action '{action}' in controller '{controller}'.");
    /// `security.profile.not_found`
    SECURITY_PROFILE_NOT_FOUND = ("security.profile.not_found", 7, 6, 1, 404, "Profile \"{id}\" not found.");
    /// `security.profile.cannot_delete`
    SECURITY_PROFILE_CANNOT_DELETE = ("security.profile.cannot_delete", 7, 6, 2, 400, "The following profiles are protected and cannot be deleted: anonymous, default, admin");
    /// `security.profile.in_use`
    SECURITY_PROFILE_IN_USE = ("security.profile.in_use", 7, 6, 3, 412, "The profile \"{id}\" is still used and cannot be deleted.");
    /// `security.profile.missing_anonymous_role`
    SECURITY_PROFILE_MISSING_ANONYMOUS_ROLE = ("security.profile.missing_anonymous_role", 7, 6, 5, 400, "The anonymous profile must include the anonymous role");
    /// `security.cookie.invalid`: a `Cookie` header that cannot be read (Tollgate extension, see
    /// `docs/protocol.md` §6.1).
    SECURITY_COOKIE_INVALID = ("security.cookie.invalid", 7, 7, 1, 401, "Invalid cookie.");
    /// `security.cookie.unsupported`
    SECURITY_COOKIE_UNSUPPORTED = ("security.cookie.unsupported", 7, 7, 2, 500, "Cookie authentication not supported.");
    /// `services.storage.unknown_index`
    SERVICES_STORAGE_UNKNOWN_INDEX = ("services.storage.unknown_index", 1, 1, 1, 412, "The index \"{index}\" does not exist.");
    /// `services.storage.unknown_collection`
    SERVICES_STORAGE_UNKNOWN_COLLECTION = ("services.storage.unknown_collection", 1, 1, 2, 412, "The collection \"{index}\":\"{collections}\" does not exist.");
    /// `services.storage.get_limit_exceeded`
    SERVICES_STORAGE_GET_LIMIT_EXCEEDED = ("services.storage.get_limit_exceeded", 1, 1, 3, 413, "The number of documents returned by this request exceeds the configured server limit.");
    /// `services.storage.write_limit_exceeded` (beyond `errors.md`: Kuzzle 2.56's id, code and status)
    SERVICES_STORAGE_WRITE_LIMIT_EXCEEDED = ("services.storage.write_limit_exceeded", 1, 1, 4, 413, "The number of documents edited by this request exceeds the configured server limit.");
    /// `services.storage.incomplete_delete` (beyond `errors.md`: Kuzzle 2.56's id, code and status; its
    /// `errors` and `count` list the failures, `props` the ids not deleted)
    SERVICES_STORAGE_INCOMPLETE_DELETE = ("services.storage.incomplete_delete", 1, 1, 9, 206, "Couldn't delete all the requested documents: {ids}");
    /// `services.storage.unknown_scroll_id` (beyond `errors.md`: Kuzzle 2.56's id, code and status)
    SERVICES_STORAGE_UNKNOWN_SCROLL_ID = ("services.storage.unknown_scroll_id", 1, 1, 14, 404, "Non-existing or expired scroll identifier.");
    /// `services.storage.scroll_duration_too_great` (beyond `errors.md`: Kuzzle 2.56's)
    SERVICES_STORAGE_SCROLL_DURATION_TOO_GREAT = ("services.storage.scroll_duration_too_great", 1, 1, 44, 400, "Scroll duration \"{duration}\" is too great.");
    /// `services.storage.not_found`
    SERVICES_STORAGE_NOT_FOUND = ("services.storage.not_found", 1, 1, 11, 404, "Document \"{id}\" not found in \"{index}\":\"{collection}\".");
    /// `services.storage.document_already_exists`
    SERVICES_STORAGE_DOCUMENT_ALREADY_EXISTS = ("services.storage.document_already_exists", 1, 1, 17, 400, "Document already exists.");
    /// `services.storage.too_many_changes`
    SERVICES_STORAGE_TOO_MANY_CHANGES = ("services.storage.too_many_changes", 1, 1, 32, 500, "Unable to modify document \"{id}\": cluster sync failed (too many simultaneous changes applied)");
    /// `services.storage.unexpected_error`
    SERVICES_STORAGE_UNEXPECTED_ERROR = ("services.storage.unexpected_error", 1, 1, 35, 500, "{reason}");
    /// `services.storage.not_connected`
    SERVICES_STORAGE_NOT_CONNECTED = ("services.storage.not_connected", 1, 1, 24, 500, "Storage service is not connected.");
    /// `services.storage.index_already_exists`
    SERVICES_STORAGE_INDEX_ALREADY_EXISTS = ("services.storage.index_already_exists", 1, 1, 38, 412, "A {scope} index named \"{index}\" already exists");
    /// `services.storage.invalid_index_name`
    SERVICES_STORAGE_INVALID_INDEX_NAME = ("services.storage.invalid_index_name", 1, 1, 41, 400, "The index name \"{index}\" is invalid");
    /// `services.storage.invalid_collection_name`
    SERVICES_STORAGE_INVALID_COLLECTION_NAME = ("services.storage.invalid_collection_name", 1, 1, 42, 400, "The collection name \"{collection}\" is invalid");
    /// `plugin.strategy.missing_user`
    PLUGIN_STRATEGY_MISSING_USER = ("plugin.strategy.missing_user", 4, 3, 20, 401, "{reason}");
    /// `core.fatal.unexpected_error`
    CORE_FATAL_UNEXPECTED_ERROR = ("core.fatal.unexpected_error", 0, 0, 1, 500, "Caught an unexpected error: {reason}.");
    /// `core.fatal.service_unavailable`
    CORE_FATAL_SERVICE_UNAVAILABLE = ("core.fatal.service_unavailable", 0, 0, 2, 500, "Service unavailable: {reason}.");
}

/// An error as the client sees it: a registry entry and the values of its placeholders.
#[derive(Debug, Clone, PartialEq)]
pub struct KuzzleError {
    def: &'static ErrorDef,
    props: Vec<Value>,
    message: String,
    /// A result the envelope carries beside the error (`server:healthCheck` reports the state of each
    /// service with its failure); `null` otherwise.
    result: Option<Box<Value>>,
    /// The failures a partial error (`services.storage.incomplete_delete`) reports, serialized as
    /// `errors` with their `count`, as Kuzzle's `PartialError` does.
    errors: Option<Vec<KuzzleError>>,
}

impl std::fmt::Display for KuzzleError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.def.id, self.message)
    }
}

impl std::error::Error for KuzzleError {}

impl KuzzleError {
    /// Builds an error; `props` fill the template's placeholders in order.
    pub fn new(def: &'static ErrorDef, props: Vec<Value>) -> Self {
        let message = render(def.template, &props);
        Self {
            def,
            props,
            message,
            result: None,
            errors: None,
        }
    }

    /// Attaches the result the envelope carries with this error.
    pub fn with_result(mut self, result: Value) -> Self {
        self.result = Some(Box::new(result));
        self
    }

    /// Attaches the failures of a partial error (serialized as `count` and `errors`).
    pub fn with_errors(mut self, errors: Vec<KuzzleError>) -> Self {
        self.errors = Some(errors);
        self
    }

    /// The failures of a partial error, if any.
    pub fn errors(&self) -> Option<&[KuzzleError]> {
        self.errors.as_deref()
    }

    /// The result carried with the error, if any.
    pub fn result(&self) -> Option<&Value> {
        self.result.as_deref()
    }

    /// An error whose template has no placeholder.
    pub fn plain(def: &'static ErrorDef) -> Self {
        Self::new(def, Vec::new())
    }

    pub fn def(&self) -> &'static ErrorDef {
        self.def
    }
    pub fn id(&self) -> &'static str {
        self.def.id
    }
    pub fn code(&self) -> u32 {
        self.def.code()
    }
    pub fn status(&self) -> u16 {
        self.def.status
    }
    pub fn message(&self) -> &str {
        &self.message
    }
    pub fn props(&self) -> &[Value] {
        &self.props
    }

    /// `api.assert.invalid_type`: `Wrong type for argument "{argument}" (expected: {type})`.
    pub fn invalid_type(argument: impl Into<String>, expected: &str) -> Self {
        Self::new(
            &API_ASSERT_INVALID_TYPE,
            vec![Value::String(argument.into()), Value::from(expected)],
        )
    }
    /// `api.assert.invalid_argument`: `Invalid argument "{argument}". Expected: {expected}`.
    pub fn invalid_argument(argument: impl Into<String>, expected: &str) -> Self {
        Self::new(
            &API_ASSERT_INVALID_ARGUMENT,
            vec![Value::String(argument.into()), Value::from(expected)],
        )
    }
    /// `api.assert.missing_argument`: `Missing argument "{argument}".`.
    pub fn missing_argument(argument: impl Into<String>) -> Self {
        Self::new(
            &API_ASSERT_MISSING_ARGUMENT,
            vec![Value::String(argument.into())],
        )
    }
    /// `api.assert.empty_argument`.
    pub fn empty_argument(argument: impl Into<String>) -> Self {
        Self::new(
            &API_ASSERT_EMPTY_ARGUMENT,
            vec![Value::String(argument.into())],
        )
    }
    /// `api.assert.unexpected_argument`, with the accepted names quoted and comma-separated.
    pub fn unexpected_argument(argument: impl Into<String>, accepted: &[&str]) -> Self {
        let accepted = accepted
            .iter()
            .map(|a| format!("\"{a}\""))
            .collect::<Vec<_>>()
            .join(", ");
        Self::new(
            &API_ASSERT_UNEXPECTED_ARGUMENT,
            vec![Value::String(argument.into()), Value::String(accepted)],
        )
    }
    /// `core.fatal.unexpected_error`: a bug or an unforeseen failure.
    pub fn internal(reason: impl std::fmt::Display) -> Self {
        Self::new(
            &CORE_FATAL_UNEXPECTED_ERROR,
            vec![Value::String(reason.to_string())],
        )
    }
}

/// Fills `{placeholder}`s in order: strings as is, numbers in decimal, `null`, arrays and objects as
/// compact JSON. A missing value renders as `null`, so no placeholder is ever left in a message.
fn render(template: &str, props: &[Value]) -> String {
    let mut out = String::with_capacity(template.len() + 16);
    let mut values = props.iter();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        let Some(close) = rest[open..].find('}') else {
            break;
        };
        out.push_str(&rest[..open]);
        match values.next() {
            Some(Value::String(s)) => out.push_str(s),
            Some(other) => out.push_str(&other.to_string()),
            None => out.push_str("null"),
        }
        rest = &rest[open + close + 1..];
    }
    out.push_str(rest);
    out
}

impl Serialize for KuzzleError {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut s = serializer.serialize_struct("KuzzleError", 7)?;
        s.serialize_field("code", &self.code())?;
        if let Some(errors) = &self.errors {
            s.serialize_field("count", &errors.len())?;
            s.serialize_field("errors", errors.as_slice())?;
        }
        s.serialize_field("id", self.def.id)?;
        s.serialize_field("message", &self.message)?;
        s.serialize_field("props", &self.props)?;
        s.serialize_field("status", &self.def.status)?;
        s.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// (id, code, status) exactly as `shared/spec/errors.md` lists them.
    const SPEC: &[(&str, u32, u16)] = &[
        ("network.http.request_too_large", 50397185, 413),
        ("network.http.unexpected_error", 50397186, 400),
        ("network.http.too_many_encodings", 50397187, 400),
        ("network.http.unsupported_compression", 50397188, 400),
        ("network.http.unsupported_verb", 50397190, 400),
        ("network.http.url_not_found", 50397191, 404),
        ("network.http.unsupported_content", 50397192, 400),
        ("network.http.unsupported_charset", 50397193, 400),
        ("network.http.volatile_parse_failed", 50397195, 400),
        ("network.http.body_parse_failed", 50397196, 400),
        ("network.websocket.unexpected_error", 50528257, 400),
        ("network.websocket.ratelimit_exceeded", 50528258, 429),
        ("api.assert.invalid_type", 33619969, 400),
        ("api.assert.invalid_argument", 33619970, 400),
        ("api.assert.missing_argument", 33619971, 400),
        ("api.assert.empty_argument", 33619972, 400),
        ("api.assert.mutually_exclusive", 33619973, 400),
        ("api.assert.unexpected_argument", 33619975, 400),
        ("api.assert.body_required", 33619976, 400),
        ("api.assert.forbidden_argument", 33619979, 400),
        ("api.process.overloaded", 33685506, 503),
        ("api.process.controller_not_found", 33685508, 404),
        ("api.process.action_not_found", 33685509, 404),
        ("api.process.shutting_down", 33685511, 503),
        ("api.process.too_many_requests", 33685512, 429),
        ("api.process.admin_exists", 33685513, 412),
        ("api.process.unauthorized_origin", 33685516, 401),
        ("api.process.too_many_logins_requests", 33685517, 429),
        ("security.token.invalid", 117506049, 401),
        ("security.token.verification_error", 117506055, 500),
        ("security.token.ttl_exceeded", 117506052, 400),
        ("security.token.expired", 117506054, 401),
        // Beyond `errors.md`: Kuzzle 2.56's id, code and status (`auth:refreshToken`).
        ("security.token.refresh_forbidden", 117506056, 401),
        ("security.credentials.unknown_strategy", 117571585, 400),
        ("security.credentials.rejected", 117571587, 400),
        ("security.rights.unauthorized", 117637121, 401),
        ("security.rights.forbidden", 117637122, 403),
        ("security.rights.lockout", 117637171, 412),
        ("security.user.already_exists", 117702657, 412),
        ("security.user.not_found", 117702658, 404),
        ("security.role.not_found", 117768193, 404),
        ("security.role.login_required", 117768194, 400),
        ("security.role.cannot_delete", 117768195, 400),
        ("security.role.in_use", 117768196, 412),
        ("security.role.unknown_controller", 117768201, 400),
        ("security.role.unknown_action", 117768202, 400),
        ("security.profile.not_found", 117833729, 404),
        ("security.profile.cannot_delete", 117833730, 400),
        ("security.profile.in_use", 117833731, 412),
        ("security.profile.missing_anonymous_role", 117833733, 400),
        ("security.cookie.unsupported", 117899266, 500),
        ("services.storage.not_found", 16842763, 404),
        ("services.storage.unknown_index", 16842753, 412),
        ("services.storage.unknown_collection", 16842754, 412),
        ("services.storage.get_limit_exceeded", 16842755, 413),
        // Beyond `errors.md`: Kuzzle 2.56's ids, codes and statuses (scrolling searches).
        ("security.cookie.invalid", 117899265, 401),
        ("services.storage.unknown_scroll_id", 16842766, 404),
        ("services.storage.scroll_duration_too_great", 16842796, 400),
        ("services.storage.document_already_exists", 16842769, 400),
        ("services.storage.too_many_changes", 16842784, 500),
        ("services.storage.unexpected_error", 16842787, 500),
        ("services.storage.not_connected", 16842776, 500),
        ("services.storage.write_limit_exceeded", 16842756, 413),
        ("services.storage.incomplete_delete", 16842761, 206),
        ("services.storage.index_already_exists", 16842790, 412),
        ("services.storage.invalid_index_name", 16842793, 400),
        ("services.storage.invalid_collection_name", 16842794, 400),
        ("plugin.strategy.missing_user", 67305492, 401),
        (
            "kuzzle-plugin-auth-passport-local.weak-password",
            16711943,
            400,
        ),
        ("core.fatal.unexpected_error", 1, 500),
        ("core.fatal.service_unavailable", 2, 500),
    ];

    #[test]
    fn registry_codes_match_the_spec() {
        assert_eq!(ALL.len(), SPEC.len());
        for (id, code, status) in SPEC {
            let def = ALL
                .iter()
                .find(|d| d.id == *id)
                .unwrap_or_else(|| panic!("{id} missing from the registry"));
            assert_eq!(def.code(), *code, "{id}");
            assert_eq!(def.status, *status, "{id}");
        }
    }

    #[test]
    fn registry_pins_well_known_codes() {
        assert_eq!(SECURITY_PROFILE_NOT_FOUND.code(), 117833729);
        assert_eq!(SECURITY_PROFILE_NOT_FOUND.status, 404);
        assert_eq!(API_ASSERT_INVALID_TYPE.code(), 33619969);
        assert_eq!(SERVICES_STORAGE_UNKNOWN_INDEX.code(), 16842753);
        assert_eq!(PLUGIN_STRATEGY_MISSING_USER.code(), 67305492);
    }

    #[test]
    fn registry_ids_are_unique() {
        for (i, a) in ALL.iter().enumerate() {
            for b in &ALL[i + 1..] {
                assert_ne!(a.id, b.id);
                assert_ne!(a.code(), b.code(), "{} and {}", a.id, b.id);
            }
        }
    }

    #[test]
    fn error_serializes_in_wire_order() {
        let e = KuzzleError::new(&SECURITY_PROFILE_NOT_FOUND, vec![json!("ghost")]);
        assert_eq!(
            serde_json::to_string(&e).unwrap_or_default(),
            r#"{"code":117833729,"id":"security.profile.not_found","message":"Profile \"ghost\" not found.","props":["ghost"],"status":404}"#
        );
    }

    #[test]
    fn render_fills_arrays_as_compact_json() {
        let e = KuzzleError::new(
            &SERVICES_STORAGE_UNKNOWN_COLLECTION,
            vec![json!("nyc"), json!(["zz", "yy"])],
        );
        assert_eq!(
            e.message(),
            r#"The collection "nyc":"["zz","yy"]" does not exist."#
        );
        let e = KuzzleError::unexpected_argument("p.policies[0].foo", &["roleId", "restrictedTo"]);
        assert_eq!(
            e.message(),
            r#"Unexpected argument "p.policies[0].foo" (accepted arguments: "roleId", "restrictedTo")"#
        );
    }

    #[test]
    fn render_never_leaves_a_placeholder() {
        for def in ALL {
            let e = KuzzleError::plain(def);
            assert!(!e.message().contains('{'), "{}", def.id);
            let count = def.template.matches('{').count();
            let e = KuzzleError::new(def, vec![json!(5); count]);
            assert!(!e.message().contains('{'), "{}", def.id);
        }
    }
}
