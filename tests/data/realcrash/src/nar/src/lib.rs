//! "nar": the narrative engine of the test game, called over FFI. Each exported function
//! panics in its own way when given the input the game's crash mode passes.
use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::{c_char, c_int, CStr};

fn text(ptr: *const c_char) -> String {
    if ptr.is_null() {
        return String::new();
    }
    unsafe { CStr::from_ptr(ptr) }.to_string_lossy().into_owned()
}

#[inline(never)]
fn lines() -> HashMap<String, String> {
    let mut map = HashMap::new();
    map.insert("greet".to_string(), "Well met, traveller.".to_string());
    map
}

/// Option::unwrap on None: the game asks for a line the script does not have.
#[no_mangle]
pub extern "C" fn nar_generate_line(key: *const c_char) -> c_int {
    let key = text(key);
    let all = lines();
    let line = all.get(&key).unwrap();
    line.len() as c_int
}

/// Result::expect on Err: the persona file does not parse.
#[no_mangle]
pub extern "C" fn nar_load_persona(source: *const c_char) -> c_int {
    let source = text(source);
    let age: u32 = source.trim().parse().expect("persona age must be a number");
    age as c_int
}

/// An explicit panic!: an unknown mood.
#[no_mangle]
pub extern "C" fn nar_set_mood(mood: c_int) -> c_int {
    match mood {
        0..=3 => mood,
        other => panic!("unknown mood {other}"),
    }
}

/// Index out of bounds: a voice index past the table.
#[no_mangle]
pub extern "C" fn nar_pick_voice(index: c_int) -> c_int {
    let voices: Vec<c_int> = std::hint::black_box(vec![10, 20, 30]);
    voices[index as usize]
}

/// Division by zero: a quest with no steps (rustc's "attempt to divide by zero" panic).
#[no_mangle]
pub extern "C" fn nar_quest_progress(done: c_int, total: c_int) -> c_int {
    let total = std::hint::black_box(total);
    done * 100 / total
}

thread_local! {
    static SPEAKERS: RefCell<Vec<c_int>> = RefCell::new(vec![1, 2, 3]);
}

/// RefCell already borrowed: the speaker table is borrowed again while it is being updated.
#[no_mangle]
pub extern "C" fn nar_lookup_speaker(id: c_int) -> c_int {
    SPEAKERS.with(|speakers| {
        let mut table = speakers.borrow_mut();
        let again = std::hint::black_box(speakers).borrow_mut();
        table.push(id);
        again.len() as c_int
    })
}
