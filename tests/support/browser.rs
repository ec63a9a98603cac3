//! Headless Chromium driven over the DevTools protocol, for the web pages' browser test: a
//! minimal WebSocket client (RFC 6455: text frames, masked from the client, fragmented or
//! large from the browser) and the few commands the test needs. No crate is needed beyond
//! the standard library and `serde_json`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// The Chromium binary: `AISC_CHROMIUM`, else `chromium` (Debian) or `chromium-browser`.
pub fn chromium_binary() -> Option<String> {
    if let Ok(path) = std::env::var("AISC_CHROMIUM") {
        return Some(path);
    }
    ["chromium", "chromium-browser", "google-chrome"].into_iter().map(str::to_string).find(|name| {
        Command::new(name)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    })
}

/// A headless browser with one page, ended when dropped.
pub struct Browser {
    process: Child,
    socket: TcpStream,
    session: String,
    next_id: u64,
    profile: std::path::PathBuf,
    /// Console errors and exceptions seen so far (a CSP violation is one).
    pub console_errors: Vec<String>,
}

impl Browser {
    pub fn launch(binary: &str) -> Self {
        let profile = std::env::temp_dir().join(format!("aisc-chromium-{}", uuid::Uuid::new_v4().simple()));
        let mut process = Command::new(binary)
            .args([
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--no-default-browser-check",
                "--remote-debugging-port=0",
                "--window-size=1280,900",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg("about:blank")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start chromium");
        let stderr = process.stderr.take().expect("stderr");
        let (sender, receiver) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(at) = line.find("ws://") {
                    let _ = sender.send(line[at..].trim().to_string());
                }
            }
        });
        let endpoint = receiver.recv_timeout(Duration::from_secs(30)).expect("chromium's DevTools endpoint");
        let socket = connect(&endpoint);
        let mut browser =
            Browser { process, socket, session: String::new(), next_id: 0, profile, console_errors: Vec::new() };
        let target = browser.call(None, "Target.createTarget", json!({ "url": "about:blank" }));
        let target_id = target["targetId"].as_str().expect("target").to_string();
        let attached = browser.call(None, "Target.attachToTarget", json!({ "targetId": target_id, "flatten": true }));
        browser.session = attached["sessionId"].as_str().expect("session").to_string();
        browser.page("Page.enable", json!({}));
        browser.page("Runtime.enable", json!({}));
        browser.page("Log.enable", json!({}));
        browser
    }

    /// A command to the page.
    pub fn page(&mut self, method: &str, params: Value) -> Value {
        let session = self.session.clone();
        self.call(Some(&session), method, params)
    }

    fn call(&mut self, session: Option<&str>, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut message = json!({ "id": id, "method": method, "params": params });
        if let Some(session) = session {
            message["sessionId"] = json!(session);
        }
        send_text(&mut self.socket, &message.to_string());
        loop {
            let reply: Value = serde_json::from_str(&receive_text(&mut self.socket)).expect("a JSON message");
            if reply["id"].as_u64() == Some(id) {
                assert!(reply.get("error").is_none(), "{method} failed: {reply}");
                return reply["result"].clone();
            }
            self.observe(&reply);
        }
    }

    fn observe(&mut self, event: &Value) {
        match event["method"].as_str() {
            Some("Runtime.exceptionThrown") => {
                self.console_errors.push(event["params"]["exceptionDetails"].to_string())
            }
            Some("Log.entryAdded") if event["params"]["entry"]["level"] == "error" => {
                let entry = &event["params"]["entry"];
                self.console_errors.push(format!("{} {}", entry["text"], entry["url"]))
            }
            Some("Runtime.consoleAPICalled") if event["params"]["type"] == "error" => {
                self.console_errors.push(event["params"]["args"].to_string())
            }
            _ => {}
        }
    }

    /// The value of a JavaScript expression in the page.
    pub fn evaluate(&mut self, expression: &str) -> Value {
        let result = self.page("Runtime.evaluate", json!({ "expression": expression, "returnByValue": true }));
        assert!(result.get("exceptionDetails").is_none(), "{expression}: {result}");
        result["result"]["value"].clone()
    }

    /// Opens `url` and waits until the page has loaded.
    pub fn open(&mut self, url: &str) {
        self.page("Page.navigate", json!({ "url": url }));
        self.wait_until("document.readyState === 'complete' && location.href !== 'about:blank'");
    }

    /// Waits (up to 20 s) until `condition` holds in the page.
    pub fn wait_until(&mut self, condition: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if self.evaluate(&format!("!!({condition})")) == json!(true) {
                return;
            }
            assert!(Instant::now() < deadline, "waited 20 s for {condition}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The page's path, query included.
    pub fn location(&mut self) -> String {
        self.evaluate("location.pathname + location.search").as_str().unwrap_or_default().to_string()
    }

    /// The viewport: a laptop's, or a phone's (touch, device pixels at 3×).
    pub fn viewport(&mut self, width: u32, height: u32, mobile: bool) {
        let scale = if mobile { 3 } else { 1 };
        self.page(
            "Emulation.setDeviceMetricsOverride",
            json!({ "width": width, "height": height, "deviceScaleFactor": scale, "mobile": mobile }),
        );
    }

    /// A PNG of the whole page (beyond the viewport) at `path`.
    pub fn screenshot(&mut self, path: &std::path::Path) {
        let metrics = self.page("Page.getLayoutMetrics", json!({}));
        let size = &metrics["cssContentSize"];
        let clip = json!({ "x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1 });
        let shot = self
            .page("Page.captureScreenshot", json!({ "format": "png", "captureBeyondViewport": true, "clip": clip }));
        let png = decode_base64(shot["data"].as_str().expect("screenshot data"));
        assert!(png.starts_with(b"\x89PNG"), "a PNG");
        if let Some(directory) = path.parent() {
            std::fs::create_dir_all(directory).expect("screenshot directory");
        }
        std::fs::write(path, png).expect("write screenshot");
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

/// Opens the WebSocket at `ws://host:port/path`.
fn connect(endpoint: &str) -> TcpStream {
    let rest = endpoint.trim_start_matches("ws://");
    let (authority, path) = rest.split_once('/').map_or((rest, ""), |(a, p)| (a, p));
    let mut socket = TcpStream::connect(authority).expect("connect to chromium");
    socket.set_read_timeout(Some(Duration::from_secs(60))).expect("timeout");
    let key = encode_base64(uuid::Uuid::new_v4().as_bytes());
    let request = format!(
        "GET /{path} HTTP/1.1\r\nHost: {authority}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    socket.write_all(request.as_bytes()).expect("handshake");
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        socket.read_exact(&mut byte).expect("handshake answer");
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head);
    assert!(head.starts_with("HTTP/1.1 101"), "not upgraded: {head}");
    socket
}

fn send_text(socket: &mut TcpStream, text: &str) {
    let payload = text.as_bytes();
    let mut frame = vec![0x81u8];
    match payload.len() {
        length if length < 126 => frame.push(0x80 | length as u8),
        length if length < 65_536 => {
            frame.push(0x80 | 126);
            frame.extend_from_slice(&(length as u16).to_be_bytes());
        }
        length => {
            frame.push(0x80 | 127);
            frame.extend_from_slice(&(length as u64).to_be_bytes());
        }
    }
    let mask: [u8; 4] = uuid::Uuid::new_v4().as_bytes()[..4].try_into().expect("four bytes");
    frame.extend_from_slice(&mask);
    frame.extend(payload.iter().enumerate().map(|(index, byte)| byte ^ mask[index % 4]));
    socket.write_all(&frame).expect("send a frame");
}

/// The next text message (continuation frames joined; pings answered; others skipped).
fn receive_text(socket: &mut TcpStream) -> String {
    let mut message = Vec::new();
    loop {
        let mut head = [0u8; 2];
        socket.read_exact(&mut head).expect("a frame");
        let (final_frame, opcode) = (head[0] & 0x80 != 0, head[0] & 0x0f);
        let length = match head[1] & 0x7f {
            126 => {
                let mut bytes = [0u8; 2];
                socket.read_exact(&mut bytes).expect("length");
                u64::from(u16::from_be_bytes(bytes))
            }
            127 => {
                let mut bytes = [0u8; 8];
                socket.read_exact(&mut bytes).expect("length");
                u64::from_be_bytes(bytes)
            }
            short => u64::from(short),
        };
        let mut payload = vec![0u8; usize::try_from(length).expect("a frame that fits")];
        socket.read_exact(&mut payload).expect("payload");
        match opcode {
            0x9 => {
                // A ping: answer with a pong of the same payload (masked, as a client must).
                let mut pong = vec![0x8a, 0x80 | payload.len() as u8, 0, 0, 0, 0];
                pong.extend_from_slice(&payload);
                socket.write_all(&pong).expect("pong");
            }
            0x8 => panic!("chromium closed the DevTools connection"),
            0x0..=0x2 => {
                message.extend_from_slice(&payload);
                if final_frame {
                    return String::from_utf8(message).expect("UTF-8 text");
                }
            }
            _ => {}
        }
    }
}

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn encode_base64(bytes: &[u8]) -> String {
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = (u32::from(chunk[0]) << 16)
            | (u32::from(*chunk.get(1).unwrap_or(&0)) << 8)
            | u32::from(*chunk.get(2).unwrap_or(&0));
        for index in 0..4 {
            if index <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * index)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn decode_base64(text: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut buffer, mut bits) = (0u32, 0u32);
    for byte in text.bytes().filter(|byte| *byte != b'=' && !byte.is_ascii_whitespace()) {
        let value = ALPHABET.iter().position(|candidate| *candidate == byte).expect("base64") as u32;
        buffer = (buffer << 6) | value;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((buffer >> bits) as u8);
            buffer &= (1 << bits) - 1;
        }
    }
    out
}

#[test]
fn base64_round_trips() {
    for sample in [&b""[..], b"f", b"fo", b"foo", b"foob", b"\x89PNG\r\n\x1a\n"] {
        assert_eq!(decode_base64(&encode_base64(sample)), sample);
    }
    assert_eq!(encode_base64(b"foobar"), "Zm9vYmFy");
}
