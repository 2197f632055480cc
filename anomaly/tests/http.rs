//! The anomalies route over a real socket: auth, parameters, filters.

use std::sync::Arc;

use anomaly::{router, Anomalies, Verdict};
use control_api::{routes, AnomaliesPage, AnomalyClass, ErrorBody};

fn verdict(subject: &str, class: AnomalyClass, at_ms: u64) -> Verdict {
    Verdict {
        id: format!("anomaly-{at_ms}"),
        subject: subject.into(),
        class,
        score: 2.0,
        at_ms,
        detectors: vec!["robust_z".into()],
        deviations: vec![],
        summary: format!("{subject} {class}"),
    }
}

#[tokio::test]
async fn the_route_answers_with_the_token_and_names_bad_parameters() {
    let store = Anomalies::new();
    store.push(verdict("backend:b1", AnomalyClass::Malfunction, 1_000));
    store.push(verdict("principal:AKIA1", AnomalyClass::Attack, 2_000));
    store.push(verdict("backend:b2", AnomalyClass::Tampering, 3_000));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}{}", listener.local_addr().unwrap(), routes::ANOMALIES);
    let app = router(store.clone(), Arc::from("s3cret"));
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let http = reqwest::Client::new();

    let r = http.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.json::<ErrorBody>().await.unwrap().error.contains("Authorization"));
    let r = http.get(&url).bearer_auth("wrong").send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.json::<ErrorBody>().await.unwrap().error, "wrong admin token");

    let r = http.get(&url).bearer_auth("s3cret").send().await.unwrap();
    assert_eq!(r.status(), 200);
    let page: AnomaliesPage = r.json().await.unwrap();
    let at: Vec<u64> = page.anomalies.iter().map(|v| v.at_ms).collect();
    assert_eq!(at, [3_000, 2_000, 1_000], "newest first");

    let page: AnomaliesPage = http
        .get(format!("{url}?class=attack&since=1500&limit=5"))
        .bearer_auth("s3cret")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(page.anomalies.len(), 1);
    assert_eq!(page.anomalies[0].subject, "principal:AKIA1");
    let page: AnomaliesPage = http
        .get(format!("{url}?subject=backend:b1"))
        .bearer_auth("s3cret")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        page.anomalies,
        [verdict("backend:b1", AnomalyClass::Malfunction, 1_000)]
    );

    for (q, name) in [
        ("class=weird", "class"),
        ("since=yesterday", "since"),
        ("limit=5000", "limit"),
        ("colour=red", "colour"),
    ] {
        let r = http
            .get(format!("{url}?{q}"))
            .bearer_auth("s3cret")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{q}");
        let e = r.json::<ErrorBody>().await.unwrap().error;
        assert!(e.contains(name), "{q}: {e}");
    }
}
