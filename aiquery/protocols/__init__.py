"""Wire protocols, shared by the client and the emulator: `table` says where and how each is
spoken, the codec modules (`openai`, `responses`, `anthropic`, `gemini`, `custom`) shape the
bodies, `common` holds the protocol-neutral requests and results, `errors` the error bodies
and `tags` the request-tags header. Imports nothing from the rest of aiquery."""
