//! A stand-in model server for the demo (`scripts/run`) on machines without an LLM: it speaks
//! the Ollama, OpenAI and Anthropic wire formats and answers like a tiny agent. It prints its
//! base URL, then serves until it is killed.

fn main() {
    let llm = stigmer_test::llm::ScriptedLlm::start_demo();
    println!("{}", llm.base_url());
    loop {
        std::thread::park();
    }
}
