from typing import ClassVar

from django.db import migrations, models


class Migration(migrations.Migration):
    initial = True
    dependencies: ClassVar[list[tuple[str, str]]] = []
    operations: ClassVar[list[migrations.CreateModel]] = [
        migrations.CreateModel(
            name="Report",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False)),
                ("client", models.CharField(max_length=100)),
                ("rows", models.PositiveIntegerField()),
                ("task_id", models.CharField(blank=True, max_length=64)),
                ("body", models.JSONField(null=True)),
                ("created", models.DateTimeField(auto_now_add=True)),
            ],
        ),
    ]
