//! The NOC console as a browser without JavaScript sees it: its login form, its session
//! cookie and the CSRF token of its forms.

use std::net::SocketAddr;

use reqwest::redirect::Policy;

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(Policy::none())
        .build()
        .unwrap()
}

/// The `name=value` of a `Set-Cookie` header, and its attributes.
pub fn set_cookie<'a>(response: &'a reqwest::Response, name: &str) -> Option<&'a str> {
    response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
}

pub fn cookie_value(header: &str) -> String {
    header
        .split(';')
        .next()
        .unwrap()
        .split_once('=')
        .unwrap()
        .1
        .to_string()
}

/// The value of the first hidden `csrf` field of a page.
pub fn csrf(html: &str) -> String {
    let at = html
        .find(r#"name="csrf" value=""#)
        .expect("a form with a CSRF token");
    let rest = &html[at + r#"name="csrf" value=""#.len()..];
    rest[..rest.find('"').unwrap()].to_string()
}

/// Logs in through the form of the daemon at `addr`: the session cookie header (with its
/// attributes), or the status of a refused login.
pub async fn login(addr: SocketAddr, user: &str, password: &str) -> Result<String, u16> {
    let client = client();
    let url = format!("http://{addr}/noc/login");
    let form = client.get(&url).send().await.unwrap();
    assert_eq!(form.status(), 200);
    let login_cookie = cookie_value(set_cookie(&form, "tocsin_noc_login").unwrap());
    let token = csrf(&form.text().await.unwrap());
    let response = client
        .post(&url)
        .header("cookie", format!("tocsin_noc_login={login_cookie}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form_body(&[
            ("user", user),
            ("password", password),
            ("csrf", &token),
        ]))
        .send()
        .await
        .unwrap();
    if response.status() != 303 {
        return Err(response.status().as_u16());
    }
    assert_eq!(response.headers()["location"], "/noc");
    Ok(set_cookie(&response, "tocsin_noc").unwrap().to_string())
}

pub fn form_body(fields: &[(&str, &str)]) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(fields)
        .finish()
}
