def test_placeholder(store):
    assert store.name
