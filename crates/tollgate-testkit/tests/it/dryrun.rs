//! Dry runs (`dryRun: true`) of role and profile changes: full validation, nothing written, and the
//! exact rights diff of every user whose rights change; through real sockets.

use serde_json::{Value, json};
use tollgate_testkit::{TestServer, WsClient, first_admin, http_once};

struct Admin {
    c: WsClient,
    jwt: String,
}

impl Admin {
    async fn call(&mut self, action: &str, extra: Value) -> Value {
        let mut r = json!({"controller":"security","action":action,"jwt":self.jwt});
        if let (Some(o), Some(e)) = (r.as_object_mut(), extra.as_object()) {
            for (k, v) in e {
                o.insert(k.clone(), v.clone());
            }
        }
        self.c.call(r).await
    }

    async fn ok(&mut self, action: &str, extra: Value) -> Value {
        let r = self.call(action, extra).await;
        assert_eq!(r["status"], 200, "{action}: {r}");
        r["result"].clone()
    }
}

/// An admin; role `r-now` (server:now) and `r-info` (server:info); profile `p` (r-now) held by u1 and
/// u2; u3 holds `default` only.
async fn fixture(s: &TestServer) -> Admin {
    let (c, jwt) = first_admin(s).await;
    let mut a = Admin { c, jwt };
    a.ok(
        "createRole",
        json!({"_id":"r-now","body":{"controllers":{"server":{"actions":{"now":true}}}}}),
    )
    .await;
    a.ok(
        "createRole",
        json!({"_id":"r-info","body":{"controllers":{"server":{"actions":{"info":true}}}}}),
    )
    .await;
    a.ok(
        "createProfile",
        json!({"_id":"p","body":{"policies":[{"roleId":"r-now"}]}}),
    )
    .await;
    for (id, profile) in [("u1", "p"), ("u2", "p"), ("u3", "default")] {
        a.ok(
            "createUser",
            json!({"_id":id,"body":{"content":{"profileIds":[profile]}}}),
        )
        .await;
    }
    a
}

fn right(controller: &str, action: &str, index: Value) -> Value {
    json!({"action":action,"collection":null,"controller":controller,"index":index})
}

#[tokio::test]
async fn dry_runs_write_nothing_and_report_each_users_rights_diff() {
    let s = TestServer::start().await;
    let mut a = fixture(&s).await;

    // updateProfile: u1 and u2 would gain server:info; u3 is not concerned.
    let r = a
        .ok(
            "updateProfile",
            json!({"_id":"p","dryRun":true,
            "body":{"policies":[{"roleId":"r-now"},{"roleId":"r-info"}]}}),
        )
        .await;
    let gains = json!({"granted":[right("server","info",Value::Null)],"revoked":[]});
    let user = |id: &str, diff: &Value| {
        let mut u = diff.clone();
        u["_id"] = json!(id);
        u
    };
    assert_eq!(
        r["impact"],
        json!({"total":2,"truncated":false,"users":[user("u1",&gains),user("u2",&gains)]})
    );
    assert_eq!(
        (&r["_id"], &r["_version"], &r["dryRun"]),
        (&json!("p"), &json!(2), &json!(true))
    );
    assert_eq!(
        r["_source"]["policies"],
        json!([{"roleId":"r-now"},{"roleId":"r-info"}])
    );
    // Nothing written.
    let p = a.ok("getProfile", json!({"_id":"p"})).await;
    assert_eq!(
        (&p["_version"], &p["_source"]["policies"]),
        (&json!(1), &json!([{"roleId":"r-now"}]))
    );

    // updateRole: the role's holders (through p) would lose server:now.
    let r = a
        .ok(
            "updateRole",
            json!({"_id":"r-now","dryRun":true,
            "body":{"controllers":{"server":{"actions":{"now":false}}}}}),
        )
        .await;
    let loses = json!({"granted":[],"revoked":[right("server","now",Value::Null)]});
    assert_eq!(
        r["impact"],
        json!({"total":2,"truncated":false,"users":[user("u1",&loses),user("u2",&loses)]})
    );
    let role = a.ok("getRole", json!({"_id":"r-now"})).await;
    assert_eq!(role["_version"], 1);

    // A restriction to one index takes the right away everywhere else (`*`: any index not named).
    let r = a
        .ok(
            "updateProfile",
            json!({"_id":"p","dryRun":true,"force":true,
            "body":{"policies":[{"roleId":"r-now","restrictedTo":[{"index":"nyc"}]}]}}),
        )
        .await;
    let elsewhere = json!({"granted":[],"revoked":[right("server","now",json!("*"))]});
    assert_eq!(
        r["impact"],
        json!({"total":2,"truncated":false,"users":[user("u1",&elsewhere),user("u2",&elsewhere)]})
    );

    // deleteProfile removing it from its users: they would fall back to `anonymous`.
    let r = a
        .ok(
            "deleteProfile",
            json!({"_id":"p","dryRun":true,"onAssignedUsers":"remove"}),
        )
        .await;
    assert_eq!(
        (&r["_source"], &r["_version"]),
        (&Value::Null, &Value::Null)
    );
    let users = r["impact"]["users"].as_array().cloned().unwrap_or_default();
    assert_eq!(users.len(), 2, "{r}");
    for u in &users {
        assert!(
            u["revoked"].as_array().is_some_and(|v| v.contains(&right(
                "server",
                "now",
                Value::Null
            ))),
            "{u}"
        );
    }
    let u1 = a.ok("getUser", json!({"_id":"u1"})).await;
    assert_eq!(u1["_source"]["profileIds"], json!(["p"]));
    a.ok("getProfile", json!({"_id":"p"})).await;

    // deleteRole of an unused role: nobody is concerned, and the role stays.
    let r = a
        .ok("deleteRole", json!({"_id":"r-info","dryRun":true}))
        .await;
    assert_eq!(r["impact"], json!({"total":0,"truncated":false,"users":[]}));
    a.ok("getRole", json!({"_id":"r-info"})).await;

    // createOrReplaceRole of a new role: version 1, nobody concerned yet.
    let r = a
        .ok(
            "createOrReplaceRole",
            json!({"_id":"r-new","dryRun":true,
            "body":{"controllers":{"server":{"actions":{"now":true}}}}}),
        )
        .await;
    assert_eq!(
        (&r["_version"], &r["impact"]["total"]),
        (&json!(1), &json!(0))
    );
    let r = a.call("getRole", json!({"_id":"r-new"})).await;
    assert_eq!(r["error"]["id"], "security.role.not_found", "{r}");
}

#[tokio::test]
async fn dry_runs_validate_like_the_real_change() {
    let s = TestServer::start().await;
    let mut a = fixture(&s).await;
    // Same errors as without dryRun.
    for (action, args, id) in [
        (
            "updateProfile",
            json!({"_id":"p","dryRun":true,"body":{"policies":[{"roleId":"nope"}]}}),
            "security.role.not_found",
        ),
        (
            "updateProfile",
            json!({"_id":"p","dryRun":"yes","body":{}}),
            "api.assert.invalid_type",
        ),
        (
            "createOrReplaceProfile",
            json!({"_id":"q","dryRun":true,"body":{"policies":"x"}}),
            "api.assert.invalid_type",
        ),
        (
            "deleteProfile",
            json!({"_id":"p","dryRun":true}),
            "security.profile.in_use",
        ),
        (
            "deleteRole",
            json!({"_id":"r-now","dryRun":true}),
            "security.role.in_use",
        ),
        (
            "updateProfile",
            json!({"_id":"admin","dryRun":true,"body":{"policies":[{"roleId":"default"}]}}),
            "security.rights.lockout",
        ),
    ] {
        let r = a.call(action, args.clone()).await;
        assert_eq!(r["error"]["id"], id, "{action} {args}: {r}");
    }
    // Over HTTP too (`?dryRun=true`).
    let body = json!({"policies":[{"roleId":"r-info"}]}).to_string();
    let auth = format!("Bearer {}", a.jwt);
    let r = http_once(
        s.addr,
        "PUT",
        "/profiles/p/_update?dryRun=true",
        &[("Authorization", &auth)],
        body.as_bytes(),
    )
    .await
    .json();
    assert_eq!(r["result"]["dryRun"], true, "{r}");
    assert_eq!(r["result"]["impact"]["total"], 2, "{r}");
    let p = a.ok("getProfile", json!({"_id":"p"})).await;
    assert_eq!(p["_version"], 1);
}
