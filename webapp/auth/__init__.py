"""Who is calling: API keys and API_TOKEN, browser sessions and the sign-in page,
the sign-in rate limit per address, and the check that refuses cross-site requests."""
