# A site's WUE as a time series (issue 13: on-site water from WUE, static or series). Depends on
# 0011; the lead re-chains it after another helper's 0012.

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('accounting', '0012_reports'),
    ]

    operations = [
        migrations.CreateModel(
            name='SiteWue',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('valid_from', models.DateTimeField()),
                ('wue_l_per_kwh', models.FloatField()),
                ('source', models.CharField(max_length=300)),
                ('version', models.PositiveIntegerField(default=1)),
                ('site', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='wue_series', to='accounting.site')),
            ],
            options={
                'constraints': [models.UniqueConstraint(fields=('site', 'valid_from'), name='site_wue_uniq'), models.CheckConstraint(condition=models.Q(('wue_l_per_kwh__gte', 0)), name='site_wue_nonneg')],
            },
        ),
    ]
