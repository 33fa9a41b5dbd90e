//! End-to-end tests: a real server on 127.0.0.1:0, real sockets, exact bytes.

mod api_keys;
mod audit;
mod auth;
mod catalog;
mod contention;
mod cookie;
mod credentials;
mod dryrun;
mod export_users;
mod hardening;
mod http;
mod lifecycle;
mod lockout;
mod metrics;
mod openapi;
mod profiles;
mod roles;
mod scaleout;
mod sdk;
mod search;
mod security;
mod security_api;
mod server_config;
mod shutdown;
mod users_bulk;
mod ws;
