//! Counting a detector's hits, misses and false alarms on a labelled set.

/// One detector's (or one category's) results over a labelled set.
#[derive(Default)]
pub struct Tally {
    pub hit: u32,
    pub false_alarm: u32,
    pub missed: u32,
}

impl Tally {
    /// Counts one text: whether it holds the thing, and whether the detector said so. Each
    /// mistake is printed with its text, so the test's output says what went wrong.
    pub fn add(&mut self, expected: bool, found: bool, text: &str, what: &str) {
        match (expected, found) {
            (true, true) => self.hit += 1,
            (false, true) => {
                self.false_alarm += 1;
                eprintln!("false positive {what}: {text}");
            }
            (true, false) => {
                self.missed += 1;
                eprintln!("missed {what}: {text}");
            }
            (false, false) => {}
        }
    }

    /// Texts that hold the thing.
    pub fn present(&self) -> u32 {
        self.hit + self.missed
    }

    pub fn precision(&self) -> f64 {
        let found = self.hit + self.false_alarm;
        if found == 0 {
            1.0
        } else {
            f64::from(self.hit) / f64::from(found)
        }
    }

    pub fn recall(&self) -> f64 {
        if self.present() == 0 {
            1.0
        } else {
            f64::from(self.hit) / f64::from(self.present())
        }
    }

    /// A row of the README's table: present, found, false positives, precision, recall.
    pub fn row(&self, name: &str) -> String {
        format!(
            "| {name} | {} | {} | {} | {:.2} | {:.2} |",
            self.present(),
            self.hit,
            self.false_alarm,
            self.precision(),
            self.recall()
        )
    }
}
