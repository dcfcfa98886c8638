//! One run's figures, printed as a human line and as one JSON line.

use serde_json::{Map, Value};

#[derive(Debug, Default, Clone)]
pub struct Report {
    pub scenario: String,
    pub target: String,
    pub transport: String,
    pub label: Option<String>,
    pub params: Vec<(String, Value)>,
    /// Named numbers; the name carries the unit (`_per_s`, `_us`, `_kib`…).
    pub figures: Vec<(String, f64)>,
    pub series: Vec<(String, Vec<f64>)>,
    /// Things that should not happen with a correct server (wrong counts,
    /// unexpected packets…). A run with anomalies still reports its figures.
    pub anomalies: Vec<String>,
    /// Why the run did not finish, if it did not.
    pub error: Option<String>,
    pub wall_s: f64,
}

impl Report {
    pub fn param(&mut self, key: &str, value: impl Into<Value>) {
        self.params.push((key.to_string(), value.into()));
    }

    pub fn fig(&mut self, key: &str, value: f64) {
        if value.is_finite() {
            self.figures.push((key.to_string(), value));
        }
    }

    pub fn fig_opt(&mut self, key: &str, value: Option<f64>) {
        if let Some(v) = value {
            self.fig(key, v);
        }
    }

    pub fn series(&mut self, key: &str, values: Vec<f64>) {
        self.series.push((key.to_string(), values));
    }

    pub fn anomaly(&mut self, what: impl Into<String>) {
        self.anomalies.push(what.into());
    }

    pub fn figure(&self, key: &str) -> Option<f64> {
        self.figures.iter().find(|(k, _)| k == key).map(|(_, v)| *v)
    }

    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("scenario".into(), self.scenario.clone().into());
        m.insert("server".into(), self.target.clone().into());
        m.insert("transport".into(), self.transport.clone().into());
        if let Some(l) = &self.label {
            m.insert("label".into(), l.clone().into());
        }
        m.insert("ok".into(), self.error.is_none().into());
        m.insert("wall_s".into(), round(self.wall_s).into());
        let params: Map<String, Value> = self.params.iter().cloned().collect();
        m.insert("params".into(), params.into());
        let figures: Map<String, Value> = self
            .figures
            .iter()
            .map(|(k, v)| (k.clone(), round(*v).into()))
            .collect();
        m.insert("figures".into(), figures.into());
        let series: Map<String, Value> = self
            .series
            .iter()
            .map(|(k, v)| {
                let vals: Vec<Value> = v.iter().map(|x| round(*x).into()).collect();
                (k.clone(), vals.into())
            })
            .collect();
        m.insert("series".into(), series.into());
        m.insert("anomalies".into(), self.anomalies.to_vec().into());
        m.insert(
            "error".into(),
            self.error.clone().map(Value::from).unwrap_or(Value::Null),
        );
        Value::Object(m)
    }

    pub fn human(&self) -> String {
        let mut s = format!("{} on {}", self.scenario, self.target);
        if let Some(l) = &self.label {
            s.push_str(&format!(" [{l}]"));
        }
        let params: Vec<String> = self
            .params
            .iter()
            .map(|(k, v)| match v {
                Value::String(t) => format!("{k}={t}"),
                other => format!("{k}={other}"),
            })
            .collect();
        s.push_str(&format!(" ({}):", params.join(" ")));
        for (k, v) in &self.figures {
            s.push_str(&format!(" {k}={}", human_number(*v)));
        }
        for (k, v) in &self.series {
            let vals: Vec<String> = v.iter().map(|x| human_number(*x)).collect();
            s.push_str(&format!(" {k}=[{}]", vals.join(",")));
        }
        if !self.anomalies.is_empty() {
            s.push_str(&format!(" ANOMALIES: {}", self.anomalies.join("; ")));
        }
        if let Some(e) = &self.error {
            s.push_str(&format!(" ERROR: {e}"));
        }
        s
    }
}

/// Three decimals are plenty for every figure reported.
fn round(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

pub fn human_number(v: f64) -> String {
    if v.abs() >= 100.0 || v.fract() == 0.0 {
        format!("{v:.0}")
    } else if v.abs() >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}
