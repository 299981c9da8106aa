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
    ("Mieszka przy ul. Marszałkowska 12/3, 00-950 Warszawa od lat.", "ADDRESS", "ul. Marszałkowska 12/3, 00-950 Warszawa"),
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
        assert text[s.start:s.end] == s.text
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
