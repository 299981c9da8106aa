import pytest

from bielik.data.curate.pii import anonymize, find_pii, iban_valid, nip_valid, pesel_valid


def test_checksums_against_known_numbers():
    assert pesel_valid("44051401359") and pesel_valid("02270803624")  # 1944 and 2002 (month + 20)
    assert not pesel_valid("44051401358") and not pesel_valid("44133101359")  # bad digit / month 13
    assert nip_valid("1234563218") and not nip_valid("1234563219")
    assert iban_valid("PL61 1090 1014 0000 0712 1981 2874") and iban_valid("61109010140000071219812874")
    assert iban_valid("DE89 3704 0044 0532 0130 00") and not iban_valid("PL61 1090 1014 0000 0712 1981 2875")


POSITIVES = [
    ("Pisz na jan.kowalski@example.com.pl albo dzwoń.", "EMAIL", "jan.kowalski@example.com.pl"),
    ("Kontakt: biuro [at] firma [dot] pl w dni robocze.", "EMAIL", "biuro [at] firma [dot] pl"),
    ("Kontakt: anna(małpa)poczta.onet.pl", "EMAIL", "anna(małpa)poczta.onet.pl"),
    ("Strona https://www.gov.pl/web/zdrowie?id=3, a potem", "URL", "https://www.gov.pl/web/zdrowie?id=3"),
    ("Zajrzyj na www.wolnelektury.pl/katalog.", "URL", "www.wolnelektury.pl/katalog"),
    ("Więcej na stronie bip.krakow.pl/artykul/123 i w urzędzie.", "URL", "bip.krakow.pl/artykul/123"),
    ("Zadzwoń pod +48 601 234 567 jutro.", "PHONE", "+48 601 234 567"),
    ("Tel. 0048 22 621 15 02 (centrala).", "PHONE", "0048 22 621 15 02"),
    ("Komórka 501-234-567, pytać o Ewę.", "PHONE", "501-234-567"),
    ("Sekretariat: (22) 621-15-02.", "PHONE", "(22) 621-15-02"),
    ("Biuro: 12 345 67 89 w godzinach pracy.", "PHONE", "12 345 67 89"),
    (
        "Mieszka przy ul. Marszałkowska 12/3, 00-950 Warszawa od lat.",
        "ADDRESS",
        "ul. Marszałkowska 12/3, 00-950 Warszawa",
    ),
    ("Siedziba: al. Jana Pawła II 43b m. 5, a oddział", "ADDRESS", "al. Jana Pawła II 43b m. 5"),
    ("Spotkanie na os. Tysiąclecia 7 o piątej.", "ADDRESS", "os. Tysiąclecia 7"),
    ("List wysłano na adres 31-042 Kraków wczoraj.", "ADDRESS", "31-042 Kraków"),
    ("ul. 3 Maja 15, 80-802 Gdańsk", "ADDRESS", "ul. 3 Maja 15, 80-802 Gdańsk"),
    ("Pacjent o numerze PESEL 44051401359 zgłosił się.", "PESEL", "44051401359"),
    ("Faktura na NIP 123-456-32-18.", "NIP", "123-456-32-18"),
    ("NIP: 1234563218, REGON 000331501", "NIP", "1234563218"),
    ("Wpłaty na konto PL61 1090 1014 0000 0712 1981 2874 do piątku.", "IBAN", "PL61 1090 1014 0000 0712 1981 2874"),
    ("Nr rachunku 61 1090 1014 0000 0712 1981 2874.", "IBAN", "61 1090 1014 0000 0712 1981 2874"),
]


@pytest.mark.parametrize("text,kind,span", POSITIVES)
def test_finds_polish_pii(text, kind, span):
    spans = find_pii(text)
    assert [(s.type, s.text) for s in spans] == [(kind, span)]


NEGATIVES = [
    "W 1997 roku uchwalono Konstytucję; w latach 1918–1939 trwała II Rzeczpospolita.",
    "Telewizor kosztuje 2 499,99 zł, a pralka 1 299 zł; budżet to 500 000 000 zł.",
    "Zgodnie z art. 148 § 2 pkt 3 Kodeksu karnego oraz art. 25 ust. 1.",
    "ISBN 978-83-240-1234-5 oraz ISBN 83-01-12345-6 i ISBN 9788324012345.",
    "Legia wygrała z Lechem 3:1, a do przerwy było 2-0; w tabeli 45 pkt.",
    "Warszawa leży na 52°13′56″N 21°00′30″E (52.2297, 21.0122).",
    "Nr katalogowy 4006381333931, kod produktu 123-45-678, sygnatura II K 123/19.",
    "Populacja wynosi 38 265 013 osób, a PKB 2 345 678 901 zł.",
    "Wydanie z 12.03.2021, godz. 14:30, pokój 12-14, strony 100-200.",
    "Numer 12345678901 nie jest PESEL-em, bo suma kontrolna się nie zgadza.",
    "Kowalski et al. 2019 opisali to zjawisko; zob. s. 45 i n.",
    "Na pl. Bohaterów zebrał się tłum, a al. Róż była zamknięta.",
    "Zamówienie nr 2024/11/000123 z dnia 5 listopada, kwota 1234,50 PLN.",
    "Temperatura spadła do -12,5 °C; wynik 601 234 567 zł to rekord.",
    "Wynik meczu: 101:99 po dogrywce; numer seryjny SN 4431-2288-19.",
]


@pytest.mark.parametrize("text", NEGATIVES)
def test_leaves_numbers_that_are_not_pii(text):
    assert find_pii(text) == []
    assert anonymize(text)[0] == text


def test_anonymize_replaces_with_typed_placeholders_and_reports_original_offsets():
    text = "Pisz: a.nowak@uw.edu.pl, tel. +48 601 234 567, ul. Długa 5, 00-238 Warszawa. Rok 2023."
    out, spans = anonymize(text)
    assert out == "Pisz: [EMAIL], tel. [PHONE], [ADDRESS]. Rok 2023."
    for s in spans:
        assert text[s.start : s.end] == s.text
    assert [s.type for s in spans] == ["EMAIL", "PHONE", "ADDRESS"]


def test_numbers_in_real_polish_text_are_not_taken_for_identifiers(shipped_pl_docs):
    # law (article numbers, dates, amounts), news (prices, scores) and books: no phone/ID/account
    # matches; the only hits are the genuine ones (a street address, news-site URLs, an e-mail)
    kinds = {}
    for doc in shipped_pl_docs:
        for s in find_pii(doc["text"]):
            kinds.setdefault(s.type, []).append(s.text)
    assert not {"PHONE", "PESEL", "NIP", "IBAN"} & set(kinds), kinds
    assert set(kinds) <= {"ADDRESS", "URL", "EMAIL"} and sum(map(len, kinds.values())) <= 6, kinds


# --- issue 14 item 6: bare country codes and addresses whose town and postal code follow a phrase ----------


def test_bare_country_code_is_part_of_the_phone_span():
    out, spans = anonymize("Zadzwoń: 48 512 300 400 albo 48 22 621 15 02, wieczorem 48-601-234-567.")
    assert out == "Zadzwoń: [PHONE] albo [PHONE], wieczorem [PHONE]."
    assert [s.text for s in spans] == ["48 512 300 400", "48 22 621 15 02", "48-601-234-567"]


def test_town_and_postal_code_after_a_phrase_are_part_of_the_address():
    out, spans = anonymize("Mieszka przy ul. Polna 3 m. 12 w Lublinie, kod 20-001, od roku.")
    assert out == "Mieszka przy [ADDRESS], od roku."
    assert [s.text for s in spans] == ["ul. Polna 3 m. 12 w Lublinie, kod 20-001"]
    assert anonymize("Kod pocztowy: 20-001 Lublin.")[0] == "[ADDRESS]."
    assert anonymize("ul. Kwiatowa 7, Piaseczno 05-500")[0] == "[ADDRESS]"


# A labelled set: every PII span of each text, by type. Scored span by span (type and exact text), so a
# partial replacement (a country code or town left behind) counts as one miss and one false alarm.
LABELLED = (
    [(t, [(k, s)]) for t, k, s in POSITIVES]
    + [(t, []) for t in NEGATIVES]
    + [
        ("Proszę dzwonić pod numer 48 512 300 400 do piątku.", [("PHONE", "48 512 300 400")]),
        (
            "Rejestracja: 48 (22) 621 15 02, fax 48 22 621 15 03.",
            [("PHONE", "48 (22) 621 15 02"), ("PHONE", "48 22 621 15 03")],
        ),
        ("Infolinia (48) 603-111-222 działa całą dobę.", [("PHONE", "(48) 603-111-222")]),
        (
            "Dzwoń: +48 (12) 345 67 89 lub 0048 501 234 567.",
            [("PHONE", "+48 (12) 345 67 89"), ("PHONE", "0048 501 234 567")],
        ),
        ("Pan Jan, tel. 600 700 800, mieszka sam.", [("PHONE", "600 700 800")]),
        ("Adres: ul. Polna 3 m. 12 w Lublinie, kod 20-001.", [("ADDRESS", "ul. Polna 3 m. 12 w Lublinie, kod 20-001")]),
        ("Sklep przy ul. Długiej 5 we Wrocławiu jest zamknięty.", [("ADDRESS", "ul. Długiej 5 we Wrocławiu")]),
        ("Biuro: al. Niepodległości 18, Warszawa 02-653.", [("ADDRESS", "al. Niepodległości 18, Warszawa 02-653")]),
        (
            "Wyślij na ul. Kwiatowa 7, kod pocztowy 05-500 Piaseczno.",
            [("ADDRESS", "ul. Kwiatowa 7, kod pocztowy 05-500 Piaseczno")],
        ),
        ("Kod pocztowy: 20-001 Lublin.", [("ADDRESS", "Kod pocztowy: 20-001 Lublin")]),
        (
            "Mieszkamy na os. Słoneczne 4/2 w Bielsku-Białej od lat.",
            [("ADDRESS", "os. Słoneczne 4/2 w Bielsku-Białej")],
        ),
        (
            "Zgłoszenia: pl. Wolności 1, 61-738 Poznań, tel. 61 852 11 00, e-mail: urzad@poznan.pl.",
            [("ADDRESS", "pl. Wolności 1, 61-738 Poznań"), ("PHONE", "61 852 11 00"), ("EMAIL", "urzad@poznan.pl")],
        ),
        (
            "Darowizny: PL27 1140 2004 0000 3002 0135 5387, NIP 526-000-12-46.",
            [("IBAN", "PL27 1140 2004 0000 3002 0135 5387"), ("NIP", "526-000-12-46")],
        ),
        ("PESEL matki: 02270803624, ojca: 44051401359.", [("PESEL", "02270803624"), ("PESEL", "44051401359")]),
        (
            "Formularz na https://epuap.gov.pl/wps/portal lub mailowo: kontakt(at)urzad.gov.pl.",
            [("URL", "https://epuap.gov.pl/wps/portal"), ("EMAIL", "kontakt(at)urzad.gov.pl")],
        ),
        # negatives close to the new patterns: amounts, counts, codes that are not postal, years, scores, ISBNs
        ("Za 48 512 300 400 zł kupiono dwa szpitale.", []),
        ("Zakład zatrudnia 48 osób; kod błędu 20-001 oznacza brak papieru.", []),
        ("Mecz zakończył się wynikiem 48:45, a w 2023 roku 512 drużyn.", []),
        ("W latach 1948–1956 wydano 300 400 egzemplarzy; ISBN 978-83-01-20001-3.", []),
        ("Ceny: 48,99 zł, 512,00 zł i 300 400 PLN brutto.", []),
        ("Mieszkał w Lublinie, a potem w Krakowie, gdzie w 1995 roku wydał 3 tomy.", []),
    ]
)


def pii_scores(examples, find=find_pii) -> dict[str, dict[str, float]]:
    """Per-type span recall and precision (exact type and text) of ``find`` on labelled ``examples``."""
    from collections import Counter

    tp, gold, pred = Counter(), Counter(), Counter()
    for text, spans in examples:
        want = Counter(spans)
        got = Counter((s.type, s.text) for s in find(text))
        for (kind, _), n in want.items():
            gold[kind] += n
        for (kind, _), n in got.items():
            pred[kind] += n
        for key, n in (want & got).items():
            tp[key[0]] += n
    return {
        k: {
            "recall": tp[k] / gold[k] if gold[k] else 1.0,
            "precision": tp[k] / pred[k] if pred[k] else 1.0,
            "gold": gold[k],
            "predicted": pred[k],
        }
        for k in sorted(gold | pred)
    }


def test_recall_and_precision_by_type_on_the_labelled_set(capsys):
    scores = pii_scores(LABELLED)
    with capsys.disabled():
        print(f"\nPII on the labelled set ({len(LABELLED)} texts):")
        for kind, s in scores.items():
            print(
                f"  {kind:8s} recall {s['recall']:.3f} precision {s['precision']:.3f} "
                f"(gold {s['gold']}, predicted {s['predicted']})"
            )
    for kind, s in scores.items():
        assert s["recall"] == 1.0 and s["precision"] == 1.0, (kind, s)
