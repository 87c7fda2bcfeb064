"""Cloud errors reach the user as whole sentences with their fix."""


def test_credentials_hint_is_never_cut_mid_word():
    from budgetft.cloud.errors import NoCredentials, first_line

    text = ("Your default credentials were not found. To set up Application Default Credentials, see "
            "https://cloud.google.com/docs/authentication/external/set-up-adc for more information.")
    assert "for more information." in str(NoCredentials(first_line(text)))
    short = first_line("word " * 100, 42)
    assert short.endswith(" …") and all(w == "word" for w in short[:-2].split())
