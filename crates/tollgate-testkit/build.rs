//! Probes the external services some end-to-end tests need, so that a test whose service is missing
//! shows as *ignored* in cargo's summary instead of passing without having run.
//!
//! Each service has a cfg, `no_<service>`, declared on every build and set when the service is
//! missing. A test that needs the service carries
//! `#[cfg_attr(no_<service>, ignore = "<what is missing>")]`.
//!
//! With `CI=true` (or `CI=1`) in the environment no cfg is set: every such test runs, and fails with
//! a clear message when its service is missing (`tollgate_testkit::missing_service`). CI never skips.
//!
//! | cfg | service | present when |
//! | --- | --- | --- |
//! | `no_node` | Node.js, for the official SDK tests (`tests/it/sdk.rs`) | `node --version` succeeds |
//! | `no_pg` | PostgreSQL | `TOLLGATE_TEST_PG_URL` is set and not empty |
//! | `no_pg_restart` | a command stopping and starting that PostgreSQL (`tests/it/scaleout.rs`) | `TOLLGATE_TEST_PG_RESTART` is set and not empty |
//! | `no_nginx` | nginx, the load balancer of `docs/scale-out.md` (`tests/it/scaleout.rs`) | `nginx -v` succeeds |
//! | `no_openapi_validator` | `openapi-spec-validator` in the Python venv of `.ci/openapi-venv` (`tests/it/openapi.rs`) | `<venv>/bin/openapi-spec-validator` exists; the venv is `$TOLLGATE_OPENAPI_VENV`, by default `target/openapi-venv` |
//!
//! To add a service: one line in [`SERVICES`], then the `cfg_attr` on its tests.

use std::path::PathBuf;
use std::process::{Command, Stdio};

/// How a service is found.
enum Probe {
    /// A program on the `PATH` that runs successfully with these arguments.
    Program(&'static str, &'static [&'static str]),
    /// An environment variable that is set and not empty (e.g. a connection URL).
    EnvVar(&'static str),
    /// A program of the OpenAPI tools' Python venv (`.ci/openapi-venv`).
    VenvProgram(&'static str),
}

/// (cfg set when the service is missing, how to find it).
const SERVICES: &[(&str, Probe)] = &[
    ("no_node", Probe::Program("node", &["--version"])),
    ("no_pg", Probe::EnvVar("TOLLGATE_TEST_PG_URL")),
    ("no_pg_restart", Probe::EnvVar("TOLLGATE_TEST_PG_RESTART")),
    ("no_nginx", Probe::Program("nginx", &["-v"])),
    (
        "no_openapi_validator",
        Probe::VenvProgram("openapi-spec-validator"),
    ),
];

/// The OpenAPI tools' venv: `$TOLLGATE_OPENAPI_VENV`, else `target/openapi-venv` in the workspace
/// (as `tollgate_testkit::openapi_venv` finds it).
fn openapi_venv() -> PathBuf {
    println!("cargo::rerun-if-env-changed=TOLLGATE_OPENAPI_VENV");
    match std::env::var_os("TOLLGATE_OPENAPI_VENV") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/openapi-venv"),
    }
}

/// The first `program` on the `PATH`.
fn on_path(program: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(program))
        .find(|path| path.is_file())
}

impl Probe {
    fn present(&self) -> bool {
        match self {
            Probe::Program(program, args) => {
                // Rebuild when the program found is replaced or removed.
                if let Some(path) = on_path(program) {
                    println!("cargo::rerun-if-changed={}", path.display());
                }
                Command::new(program)
                    .args(*args)
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .is_ok_and(|status| status.success())
            }
            Probe::VenvProgram(program) => {
                let path = openapi_venv().join("bin").join(program);
                let present = path.is_file();
                // Rebuild when it is removed. A missing path is not watched: cargo would run this
                // script on every build. After making the venv, rebuild (`touch build.rs`).
                if present {
                    println!("cargo::rerun-if-changed={}", path.display());
                }
                present
            }
            Probe::EnvVar(name) => {
                println!("cargo::rerun-if-env-changed={name}");
                std::env::var_os(name).is_some_and(|value| !value.is_empty())
            }
        }
    }
}

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-env-changed=PATH");
    println!("cargo::rerun-if-env-changed=CI");
    let ci = std::env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true") || v == "1");
    for (cfg, probe) in SERVICES {
        println!("cargo::rustc-check-cfg=cfg({cfg})");
        if !probe.present() && !ci {
            println!("cargo::rustc-cfg={cfg}");
        }
    }
}
