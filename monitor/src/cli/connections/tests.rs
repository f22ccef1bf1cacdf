use super::*;

/// The filters travel to the agent as `/connections` query parameters.
#[test]
fn filters_become_query_parameters() {
    let args = ConnectionsArgs {
        agent: "http://127.0.0.1:9977".into(),
        state: tcp_state::parse("close_wait"),
        min_idle: None,
        suspect: true,
        pid: Some(812),
        port: Some(6379),
        netns: Some(4_026_531_840),
        wide: false,
        json: false,
    };
    let query = query(&args);
    let query: Vec<(&str, &str)> = query.iter().map(|(k, v)| (*k, v.as_str())).collect();
    assert_eq!(
        query,
        [
            ("state", "close_wait"),
            ("suspect", "true"),
            ("pid", "812"),
            ("port", "6379"),
            ("netns", "4026531840"),
        ]
    );
}
