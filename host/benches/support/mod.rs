//! What the upload benches share: the contact they create, the same for EWS and Graph so
//! their figures compare.

use tandem_host::record::{Fields, Value};

/// Contact `n` of an upload (11 fields) and its sync id.
pub fn contact(n: usize) -> (Fields, String) {
    let text = |s: String| Value::Text(s);
    let mut fields = Fields::new();
    fields.insert("GivenName".into(), text(format!("Given{n}")));
    fields.insert("Surname".into(), text(format!("Surname{n}")));
    fields.insert("FileAs".into(), text(format!("Surname{n}, Given{n}")));
    fields.insert("CompanyName".into(), text("Blue Yonder Airlines".into()));
    fields.insert("JobTitle".into(), text("Buyer".into()));
    fields.insert("EmailAddress1".into(), text(format!("c{n}@example.com")));
    fields.insert("BusinessPhone".into(), text("+1 425 555 0199".into()));
    fields.insert(
        "MobilePhone".into(),
        text(format!("+1 425 555 {:04}", n % 10_000)),
    );
    fields.insert("BusinessStreet".into(), text("1234 56th Ave".into()));
    fields.insert("BusinessCity".into(), text("La Habra".into()));
    fields.insert("BusinessPostalCode".into(), text("90631".into()));
    (fields, format!("sync-{n:06}"))
}
