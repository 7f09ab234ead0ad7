#![allow(dead_code)]

use std::collections::BTreeMap;

use genesys_sim::{OrgInfo, Scenario, SimHandle};
use jiff::Timestamp;
use serde_json::Value;

pub fn t(s: &str) -> Timestamp {
    s.parse().unwrap()
}

/// The `test` scenario with a fixed period [2026-01-07, 2026-01-10) so data is identical.
pub fn fixed_test() -> Scenario {
    Scenario::test().with_period(t("2026-01-07T00:00:00Z"), t("2026-01-10T00:00:00Z"))
}

#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: String,
}

impl Resp {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
    pub fn header(&self, k: &str) -> Option<String> {
        self.headers.get(k).map(|v| v.to_str().unwrap().to_string())
    }
}

pub struct Client {
    pub http: reqwest::Client,
    pub org: OrgInfo,
    pub token: String,
}

pub async fn token_req(http: &reqwest::Client, login_base: &str, id: &str, secret: &str) -> Resp {
    let r = http
        .post(format!("{login_base}/oauth/token"))
        .basic_auth(id, Some(secret))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    into_resp(r).await
}

pub async fn into_resp(r: reqwest::Response) -> Resp {
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let body = r.text().await.unwrap();
    Resp {
        status,
        headers,
        body,
    }
}

impl Client {
    pub async fn login(sim: &SimHandle, org: usize) -> Client {
        let http = reqwest::Client::new();
        let org = sim.orgs()[org].clone();
        let r = token_req(
            &http,
            &org.login_base_url,
            &org.client_id,
            &org.client_secret,
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.body);
        let token = r.json()["access_token"].as_str().unwrap().to_string();
        Client { http, org, token }
    }
    pub async fn try_get(&self, path: &str) -> Result<Resp, reqwest::Error> {
        let r = self
            .http
            .get(format!("{}{path}", self.org.api_base_url))
            .bearer_auth(&self.token)
            .send()
            .await?;
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let body = r.text().await?;
        Ok(Resp {
            status,
            headers,
            body,
        })
    }
    pub async fn get(&self, path: &str) -> Resp {
        self.try_get(path).await.unwrap()
    }
    pub async fn post(&self, path: &str, body: &Value) -> Resp {
        let r = self
            .http
            .post(format!("{}{path}", self.org.api_base_url))
            .bearer_auth(&self.token)
            .json(body)
            .send()
            .await
            .unwrap();
        into_resp(r).await
    }

    /// All users (agents and evaluators).
    pub async fn users(&self) -> Vec<String> {
        let r = self.get("/api/v2/users?pageSize=500").await;
        r.json()["entities"]
            .as_array()
            .unwrap()
            .iter()
            .map(|u| u["id"].as_str().unwrap().to_string())
            .collect()
    }

    /// A careful paging client: follows nextUri; refetches once when nextUri repeats the
    /// page just read and then continues with pageNumber+1 semantics via the server's next
    /// link; stops on an empty page or no nextUri; retries 5xx/429 after a short pause.
    /// Returns id → entity JSON (raw bytes) keeping the newest changedDate.
    pub async fn page_all(&self, first: &str, out: &mut BTreeMap<String, String>) -> usize {
        let mut uri = first.to_string();
        let mut requests = 0;
        let mut last_self = String::new();
        loop {
            requests += 1;
            assert!(requests < 10_000, "runaway paging");
            let r = match self.try_get(&uri).await {
                Ok(r) => r,
                Err(_) => continue,
            };
            if r.status == 429 || r.status >= 500 {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                continue;
            }
            assert_eq!(r.status, 200, "{uri}: {}", r.body);
            let Ok(v) = serde_json::from_str::<Value>(&r.body) else {
                continue;
            };
            let ents = v["entities"].as_array().unwrap();
            for raw in raw_entities(&r.body, "entities") {
                let e: Value = serde_json::from_str(&raw).unwrap();
                keep_newest(out, e["id"].as_str().unwrap(), raw, &e);
            }
            let next = v.get("nextUri").and_then(Value::as_str).map(str::to_string);
            let this = v["selfUri"].as_str().unwrap().to_string();
            match next {
                _ if ents.is_empty() => break,
                None => break,
                Some(n) if n == this && last_self == this => {
                    panic!("nextUri repeated twice")
                }
                Some(n) => {
                    last_self = this;
                    uri = n;
                }
            }
        }
        requests
    }
}

pub fn keep_newest(out: &mut BTreeMap<String, String>, id: &str, raw: String, e: &Value) {
    let changed = e["changedDate"].as_str().unwrap_or("").to_string();
    match out.get(id) {
        Some(prev) => {
            let pv: Value = serde_json::from_str(prev).unwrap();
            if pv["changedDate"].as_str().unwrap_or("") < changed.as_str() {
                out.insert(id.to_string(), raw);
            }
        }
        None => {
            out.insert(id.to_string(), raw);
        }
    }
}

/// The exact bytes of each entity of a page (`entities` or `results`).
pub fn raw_entities(body: &str, key: &str) -> Vec<String> {
    #[derive(serde::Deserialize)]
    struct P<'a> {
        #[serde(borrow, default)]
        entities: Vec<&'a serde_json::value::RawValue>,
        #[serde(borrow, default)]
        results: Vec<&'a serde_json::value::RawValue>,
    }
    let p: P = serde_json::from_str(body).unwrap();
    let v = if key == "results" {
        p.results
    } else {
        p.entities
    };
    v.into_iter().map(|r| r.get().to_string()).collect()
}
