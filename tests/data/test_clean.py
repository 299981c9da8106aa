from bielik.data.curate.clean import CleanConfig, Cleaner, step_boilerplate, step_broken_table, step_encoding

ARTICLE = (
    "Sejm uchwalił w piątek nowelizację ustawy o ochronie zwierząt. Za przyjęciem projektu głosowało "
    "402 posłów, przeciw było 12, a od głosu wstrzymało się 20. Zmiany mają wejść w życie po upływie "
    "trzech miesięcy od dnia ogłoszenia.\n"
    "Nowe przepisy zakazują trzymania psów na uwięzi dłużej niż przez 12 godzin na dobę. Kojec dla "
    "psa o wadze powyżej 20 kg ma mieć co najmniej 10 metrów kwadratowych powierzchni, a budy muszą "
    "chronić zwierzęta przed deszczem, mrozem i upałem.\n"
    "Organizacje prozwierzęce od lat apelowały o takie rozwiązania. Jak podkreślają, psy trzymane na "
    "łańcuchach cierpią z powodu braku ruchu i kontaktu z ludźmi, a ich opiekunowie rzadko ponoszą "
    "konsekwencje zaniedbań."
)


def test_edited_polish_passes_unchanged():
    r = Cleaner()(ARTICLE, {})
    assert r.keep and r.text == ARTICLE and r.changes == []


def test_real_shipped_polish_mostly_kept(shipped_pl_docs):
    cleaner = Cleaner()
    docs = [d for d in shipped_pl_docs if len(d["text"]) > 1500][:150]
    res = [cleaner(d["text"], {}) for d in docs]
    kept = sum(r.keep for r in res)
    assert kept / len(res) > 0.9, [r.reason for r in res if not r.keep]


def test_mojibake_is_repaired():
    broken = ARTICLE.encode("utf-8").decode("cp1250", errors="replace")
    assert broken != ARTICLE
    r = step_encoding(broken, {}, CleanConfig())
    assert r.keep and r.change == "encoding_repaired" and r.text == ARTICLE


def test_unrepairable_encoding_dropped():
    r = Cleaner()(ARTICLE.replace("ą", "\ufffd").replace("ę", "\ufffd"), {})
    assert not r.keep and r.reason == "encoding_errors"


def test_boilerplate_lines_removed_and_pages_of_menus_dropped():
    page = "\n".join(
        [
            "Strona główna | Aktualności | Sport | Kultura | Kontakt",
            "Ta strona używa plików cookies. Akceptuję pliki cookies",
            "Zaloguj się",
            ARTICLE,
            "Udostępnij na Facebooku",
            "© 2024 Portal. Wszelkie prawa zastrzeżone.",
        ]
    )
    r = step_boilerplate(page, {}, CleanConfig())
    assert r.keep and r.text.strip() == ARTICLE and r.change == "boilerplate_lines_removed:5"
    menu_page = "\n".join(
        [
            "Strona główna",
            "Aktualności",
            "Sport",
            "Kultura",
            "Kontakt",
            "Regulamin serwisu sklepu",
            "Polityka prywatności",
            "Zdanie na koniec.",
        ]
    )
    assert step_boilerplate(menu_page, {}, CleanConfig()).reason == "boilerplate"
    # dialogue and refrains are not boilerplate
    verse = "— Czytaj dalej!\n— Czytaj dalej!\n— Czytaj dalej!\nAle nikt nie czytał, bo było ciemno."
    assert step_boilerplate(verse, {}, CleanConfig()).change is None


def test_number_soup_table_dropped():
    table = "\n".join(f"Spółka {i} 12 345,67 -3,2% 2019 45 678 1,23" for i in range(12))
    r = step_broken_table(ARTICLE[:300] + "\n" + table, {}, CleanConfig())
    assert not r.keep and r.reason == "broken_table"
    assert step_broken_table(ARTICLE, {}, CleanConfig()).keep


def test_language_length_truncation_non_linguistic_blocklist():
    c = Cleaner(CleanConfig(blocklist_domains=["zakazane.pl"], blocklist_sources=["forum/"]))
    english = ("The Sejm passed an amendment to the animal protection act on Friday. " * 6).strip()
    assert c(english, {}).reason == "language_en"
    assert c("Krótki tekst.", {}).reason == "too_short"
    assert (
        c(
            ARTICLE + " Ostatnie zdanie urywa się w pół słowa i nie ma końca, bo ktoś uciął plik w trakcie zapisu", {}
        ).reason
        == "truncated"
    )
    assert (
        c(" ".join(["=>", "{}", "[]", "::", "0x1F", "#", "@u", "~~", "<br/>", "tak"] * 30), {}).reason
        == "non_linguistic"
    )
    assert c(ARTICLE, {"url": "https://www.forum.zakazane.pl/watek/1"}).reason == "blocklisted_domain"
    assert c(ARTICLE, {"url": "https://niezakazane.pl/"}).keep
    assert c(ARTICLE, {"source": "forum/wpis-12"}).reason == "blocklisted_source"
    meta = {}
    assert c(ARTICLE, meta).keep and meta["language"] == "pl" and meta["language_prob"] > 0.9


def test_unknown_step_is_a_config_error():
    import pytest

    from bielik.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown step"):
        CleanConfig(steps=["encoding", "boilerplat"])
