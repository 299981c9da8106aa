from bielik.data.langid import detect, share_in


def test_detect_polish_english_and_empty():
    lang, p = detect("Rzeczpospolita Polska jest dobrem wspólnym wszystkich obywateli.")
    assert lang == "pl" and p > 0.9
    lang, p = detect("The Republic of Poland shall be the common good of all its citizens.")
    assert lang == "en" and p > 0.9
    assert detect("12 345 — 67,8 %") == ("und", 0.0)


def test_restricted_languages_and_share():
    # Slovak is close to Polish; restricting to pl/en must still pick one of them
    lang, _ = detect("Dobrý deň, ako sa máte?", languages=("pl", "en"))
    assert lang in {"pl", "en"}
    texts = ["Dzień dobry, jak się masz?", "Good morning, how are you today?", "Mam się dobrze, dziękuję."]
    assert abs(share_in(texts, "pl") - 2 / 3) < 1e-9
