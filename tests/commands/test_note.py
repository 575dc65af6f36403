from chatops.testing import Bot


async def test_a_note_lands_on_the_timeline(bot: Bot) -> None:
    room = await bot.declare("sev2 checkout")

    run = await bot.run("/incident note rolled checkout back to v142", channel=room)

    assert run.outcome == "ok"
    assert "Noted by <@U0ADITI01>: rolled checkout back to v142" in run.text
    [note] = [e for e in run.events if e.type == "note"]
    assert note.summary == "rolled checkout back to v142"


async def test_outside_a_war_room_it_says_where_to_run_it(bot: Bot) -> None:
    run = await bot.run("/incident note hello")

    assert run.outcome == "denied"
    assert "Run it in the incident's war room" in run.text
